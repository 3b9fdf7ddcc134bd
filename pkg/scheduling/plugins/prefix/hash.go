package prefix

import (
	"math/bits"

	"github.com/cespare/xxhash/v2"
)

// AppendBlockHashes appends to dst the chained hashes of the first
// maxBlocks full blocks of prompt, blockSize bytes each, and returns dst.
// Block i's hash combines block i−1's hash with the xxhash64 of block i's
// bytes through a 64-bit finalizer (chain); the chain is seeded with the
// xxhash64 of model, so equal text under two models never matches and a
// block's hash identifies the whole prefix up to and including it. (One
// xxhash64 call per block, rather than a digest reseeded per block: the
// hashes are a sixth of a scheduling decision's time at 100 endpoints.)
// A trailing partial block is not hashed (model servers only cache full
// blocks either). Hash 0 is mapped to 1 because the index uses 0 for empty
// slots.
func AppendBlockHashes(dst []uint64, model string, prompt []byte, blockSize, maxBlocks int) []uint64 {
	if blockSize <= 0 {
		return dst
	}
	prev := xxhash.Sum64String(model)
	for off, n := 0, 0; off+blockSize <= len(prompt) && n < maxBlocks; off, n = off+blockSize, n+1 {
		h := chain(prev, xxhash.Sum64(prompt[off:off+blockSize]))
		if h == 0 {
			h = 1
		}
		dst = append(dst, h)
		prev = h
	}
	return dst
}

// chain mixes a block's own hash into its predecessor's: the finalizer of
// their rotated combination, so the order of blocks matters and equal
// blocks at different positions hash apart.
func chain(prev, block uint64) uint64 {
	return mix64(bits.RotateLeft64(prev, 31) ^ block ^ 0x9e3779b97f4a7c15)
}

// mix64 is splitmix64's finalizer: every input bit flips about half of the
// output bits, so nearby inputs hash far apart.
func mix64(h uint64) uint64 {
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}
