package prefix

import "github.com/cespare/xxhash/v2"

// AppendBlockHashes appends to dst the chained hashes of the first
// maxBlocks full blocks of prompt, blockSize bytes each, and returns dst.
// Block i's hash is xxhash64 of its bytes seeded with block i−1's hash; the
// chain is seeded with the xxhash64 of model, so equal text under two
// models never matches and a block's hash identifies the whole prefix up to
// and including it. A trailing partial block is not hashed (model servers
// only cache full blocks either). Hash 0 is mapped to 1 because the index
// uses 0 for empty slots.
func AppendBlockHashes(dst []uint64, model string, prompt []byte, blockSize, maxBlocks int) []uint64 {
	if blockSize <= 0 {
		return dst
	}
	prev := xxhash.Sum64String(model)
	var d xxhash.Digest
	for off, n := 0, 0; off+blockSize <= len(prompt) && n < maxBlocks; off, n = off+blockSize, n+1 {
		d.ResetWithSeed(prev)
		_, _ = d.Write(prompt[off : off+blockSize])
		h := d.Sum64()
		if h == 0 {
			h = 1
		}
		dst = append(dst, h)
		prev = h
	}
	return dst
}
