package kvevents

import (
	"encoding/binary"

	"github.com/cespare/xxhash/v2"
)

// RootHash is the parent of a sequence's first block in igw's chain of
// block hashes: a constant of igw's own, so that igw's keys never depend
// on an engine's hash function or seed (vLLM's PYTHONHASHSEED, SGLang's).
var RootHash = xxhash.Sum64String("igw kv-cache block chain v1")

// ChainHash is igw's hash of one block: its token ids chained onto the
// hash of the block before it. Two blocks have equal hashes when their
// whole prefixes have equal tokens, which is what a prefix-cache hit is.
// The index computes it from the token ids of BlockStored events, and a
// router from the prompt's tokens (PromptHashes), so the two meet without
// knowing how the engine hashes.
func ChainHash(parent uint64, tokens []uint32) uint64 {
	var buf [8 + 4*64]byte
	var d xxhash.Digest
	d.Reset()
	binary.LittleEndian.PutUint64(buf[:8], parent)
	_, _ = d.Write(buf[:8])
	for len(tokens) > 0 {
		n := min(len(tokens), 64)
		for i, t := range tokens[:n] {
			binary.LittleEndian.PutUint32(buf[4*i:], t)
		}
		_, _ = d.Write(buf[:4*n])
		tokens = tokens[n:]
	}
	return d.Sum64()
}

// PromptHashes appends to dst the chained hashes of the full blocks of
// blockSize tokens of a prompt (a trailing partial block is not cached by
// engines and has no hash), at most maxBlocks of them.
func PromptHashes(dst []uint64, tokens []uint32, blockSize, maxBlocks int) []uint64 {
	if blockSize <= 0 {
		return dst
	}
	h := RootHash
	for b := 0; (b+1)*blockSize <= len(tokens) && b < maxBlocks; b++ {
		h = ChainHash(h, tokens[b*blockSize:(b+1)*blockSize])
		dst = append(dst, h)
	}
	return dst
}
