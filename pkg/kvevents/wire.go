package kvevents

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// Kind is an event's tag, vLLM's event class name.
type Kind uint8

// The events of REFERENCE §10. KindUnknown is a tag igw does not know (a
// newer engine's event): it is skipped, not an error.
const (
	KindUnknown Kind = iota
	KindBlockStored
	KindBlockRemoved
	KindAllBlocksCleared
)

// String is the tag as it appears on the wire.
func (k Kind) String() string {
	switch k {
	case KindBlockStored:
		return "BlockStored"
	case KindBlockRemoved:
		return "BlockRemoved"
	case KindAllBlocksCleared:
		return "AllBlocksCleared"
	}
	return "unknown"
}

// Event is one decoded KV-cache event. Fields a kind does not carry, and
// trailing fields an older engine omits, are zero; the Has* flags tell a
// nil (absent) value from zero where the difference matters.
type Event struct {
	Kind Kind
	// BlockHashes are the engine's block hashes, in chain order for
	// BlockStored. Bytes hashes are reduced to their last 8 bytes,
	// big-endian; int64 hashes keep their bits.
	BlockHashes []uint64
	// ParentHash is the hash of the block before the first stored one;
	// HasParent is false for a sequence's first block.
	ParentHash uint64
	HasParent  bool
	// TokenIDs are the stored blocks' token ids, BlockSize per block: what
	// igw's own token hashing (issue 15 part 3) will key blocks by.
	TokenIDs  []uint32
	BlockSize int
	// LoRAID and LoRAName identify the adapter the blocks were computed
	// with (HasLoRAID false and LoRAName "" for the base model).
	LoRAID    int64
	HasLoRAID bool
	LoRAName  string
	Medium    string
	// GroupIdx is the KV-cache group of a hybrid model (0 when absent);
	// SpecKind and SlidingWindow say what kind of attention the group is,
	// so sliding-window groups never pass for full prefixes.
	GroupIdx      int
	SpecKind      string
	SlidingWindow int
}

// Batch is one message's payload: vLLM's EventBatch.
type Batch struct {
	Timestamp float64
	Events    []Event
	// DataParallelRank is the engine's data-parallel rank; HasRank false
	// when the engine omits it.
	DataParallelRank int
	HasRank          bool
}

// Limits bound what one payload may make the decoder allocate, whatever
// its claimed array lengths: an engine is trusted to be well-formed, a
// network is not.
type Limits struct {
	// MaxEvents is the most events a batch may hold.
	MaxEvents int
	// MaxBlocks is the most block hashes one event may name.
	MaxBlocks int
	// MaxTokens is the most token ids one event may carry.
	MaxTokens int
}

// DefaultLimits are far above what vLLM sends per engine step (one step
// stores at most max-num-batched-tokens / block-size blocks).
var DefaultLimits = Limits{MaxEvents: 1 << 16, MaxBlocks: 1 << 16, MaxTokens: 1 << 20}

// ErrMalformed is wrapped by every decoding error: the payload is not an
// EventBatch.
var ErrMalformed = errors.New("kvevents: malformed event batch")

// Decoder decodes EventBatch payloads by position (REFERENCE §10),
// tolerating missing trailing fields (older engines, msgspec's
// omit_defaults) and extra ones (newer engines). It reuses its buffers:
// the Batch it returns is valid until the next Decode. Not safe for
// concurrent use; a subscriber owns one.
type Decoder struct {
	limits Limits
	r      bytes.Reader
	dec    *msgpack.Decoder
	batch  Batch
	hashes []uint64 // backing store of every event's BlockHashes
	tokens []uint32 // and TokenIDs
}

// NewDecoder returns a Decoder enforcing limits (zero fields take
// DefaultLimits').
func NewDecoder(limits Limits) *Decoder {
	if limits.MaxEvents <= 0 {
		limits.MaxEvents = DefaultLimits.MaxEvents
	}
	if limits.MaxBlocks <= 0 {
		limits.MaxBlocks = DefaultLimits.MaxBlocks
	}
	if limits.MaxTokens <= 0 {
		limits.MaxTokens = DefaultLimits.MaxTokens
	}
	d := &Decoder{limits: limits}
	d.dec = msgpack.NewDecoder(&d.r)
	return d
}

// Decode parses one payload. On error nothing of the batch should be
// applied: the caller treats it as a lost message.
func (d *Decoder) Decode(payload []byte) (*Batch, error) {
	d.r.Reset(payload)
	d.dec.Reset(&d.r)
	d.batch = Batch{Events: d.batch.Events[:0]}
	d.hashes, d.tokens = d.hashes[:0], d.tokens[:0]
	if err := d.decodeBatch(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	// Point events into the shared backing arrays now that they no longer
	// grow (appends above may have moved them).
	hi, ti := 0, 0
	for i := range d.batch.Events {
		ev := &d.batch.Events[i]
		nh, nt := len(ev.BlockHashes), len(ev.TokenIDs)
		ev.BlockHashes = d.hashes[hi : hi+nh : hi+nh]
		ev.TokenIDs = d.tokens[ti : ti+nt : ti+nt]
		hi, ti = hi+nh, ti+nt
	}
	return &d.batch, nil
}

func (d *Decoder) decodeBatch() error {
	n, err := d.arrayLen(64, "batch")
	if err != nil {
		return err
	}
	if n < 2 {
		return fmt.Errorf("batch has %d fields, want ≥ 2", n)
	}
	if d.batch.Timestamp, err = d.float(); err != nil {
		return fmt.Errorf("timestamp: %w", err)
	}
	ne, err := d.arrayLen(d.limits.MaxEvents, "events")
	if err != nil {
		return err
	}
	for i := range max(ne, 0) {
		if err := d.decodeEvent(); err != nil {
			return fmt.Errorf("event %d: %w", i, err)
		}
	}
	if n >= 3 {
		if d.batch.DataParallelRank, d.batch.HasRank, err = d.optInt(); err != nil {
			return fmt.Errorf("data_parallel_rank: %w", err)
		}
	}
	return d.skip(n - 3)
}

func (d *Decoder) decodeEvent() error {
	n, err := d.arrayLen(64, "event")
	if err != nil {
		return err
	}
	if n < 1 {
		return errors.New("event has no tag")
	}
	tag, err := d.dec.DecodeString()
	if err != nil {
		return fmt.Errorf("tag: %w", err)
	}
	ev := Event{}
	switch tag {
	case "BlockStored":
		ev.Kind = KindBlockStored
	case "BlockRemoved":
		ev.Kind = KindBlockRemoved
	case "AllBlocksCleared":
		ev.Kind = KindAllBlocksCleared
	default:
		// A newer engine's event: skip its fields, keep the batch.
		d.batch.Events = append(d.batch.Events, Event{Kind: KindUnknown})
		return d.skip(n - 1)
	}
	fields := n - 1
	next := func() bool {
		if fields == 0 {
			return false
		}
		fields--
		return true
	}
	switch ev.Kind {
	case KindBlockStored:
		// block_hashes, parent_block_hash, token_ids, block_size, lora_id,
		// medium, lora_name, extra_keys, group_idx, kv_cache_spec_kind,
		// sliding_window
		if !next() {
			return errors.New("BlockStored without block_hashes")
		}
		if err := d.hashList(&ev); err != nil {
			return err
		}
		if next() {
			if ev.ParentHash, ev.HasParent, err = d.optHash(); err != nil {
				return fmt.Errorf("parent_block_hash: %w", err)
			}
		}
		if next() {
			if err := d.tokenList(&ev); err != nil {
				return err
			}
		}
		if next() {
			if ev.BlockSize, _, err = d.optInt(); err != nil {
				return fmt.Errorf("block_size: %w", err)
			}
		}
		if next() {
			v, ok, err := d.optInt()
			if err != nil {
				return fmt.Errorf("lora_id: %w", err)
			}
			ev.LoRAID, ev.HasLoRAID = int64(v), ok
		}
		if next() {
			if ev.Medium, err = d.optString(); err != nil {
				return fmt.Errorf("medium: %w", err)
			}
		}
		if next() {
			if ev.LoRAName, err = d.optString(); err != nil {
				return fmt.Errorf("lora_name: %w", err)
			}
		}
		if next() { // extra_keys: engine-internal, not needed to match
			if err := d.skipValue(0); err != nil {
				return fmt.Errorf("extra_keys: %w", err)
			}
		}
		if err := d.groupFields(&ev, next, true); err != nil {
			return err
		}
	case KindBlockRemoved:
		// block_hashes, medium, group_idx
		if !next() {
			return errors.New("BlockRemoved without block_hashes")
		}
		if err := d.hashList(&ev); err != nil {
			return err
		}
		if next() {
			if ev.Medium, err = d.optString(); err != nil {
				return fmt.Errorf("medium: %w", err)
			}
		}
		if err := d.groupFields(&ev, next, false); err != nil {
			return err
		}
	}
	d.batch.Events = append(d.batch.Events, ev)
	return d.skip(fields)
}

// groupFields reads group_idx and, for BlockStored, kv_cache_spec_kind and
// sliding_window.
func (d *Decoder) groupFields(ev *Event, next func() bool, stored bool) error {
	var err error
	if next() {
		if ev.GroupIdx, _, err = d.optInt(); err != nil {
			return fmt.Errorf("group_idx: %w", err)
		}
		if ev.GroupIdx < 0 {
			return fmt.Errorf("group_idx %d is negative", ev.GroupIdx)
		}
	}
	if !stored {
		return nil
	}
	if next() {
		if ev.SpecKind, err = d.optString(); err != nil {
			return fmt.Errorf("kv_cache_spec_kind: %w", err)
		}
	}
	if next() {
		if ev.SlidingWindow, _, err = d.optInt(); err != nil {
			return fmt.Errorf("sliding_window: %w", err)
		}
	}
	return nil
}

// arrayLen reads an array header of at most limit elements; nil reads as
// -1 (absent). An array longer than the bytes left cannot be real: each
// element takes at least one byte.
func (d *Decoder) arrayLen(limit int, what string) (int, error) {
	n, err := d.dec.DecodeArrayLen()
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	if n > limit || n > d.r.Len() {
		return 0, fmt.Errorf("%s: %d elements exceed the limit or the payload", what, n)
	}
	return n, nil
}

func (d *Decoder) hashList(ev *Event) error {
	n, err := d.arrayLen(d.limits.MaxBlocks, "block_hashes")
	if err != nil {
		return err
	}
	start := len(d.hashes)
	for range max(n, 0) {
		h, ok, err := d.optHash()
		if err != nil {
			return fmt.Errorf("block_hashes: %w", err)
		}
		if !ok {
			return errors.New("block_hashes: nil hash")
		}
		d.hashes = append(d.hashes, h)
	}
	ev.BlockHashes = d.hashes[start:]
	return nil
}

func (d *Decoder) tokenList(ev *Event) error {
	n, err := d.arrayLen(d.limits.MaxTokens, "token_ids")
	if err != nil {
		return err
	}
	start := len(d.tokens)
	for range max(n, 0) {
		t, ok, err := d.optInt()
		if err != nil || !ok || t < 0 || t > 1<<32-1 {
			return fmt.Errorf("token_ids: not a token id (%w)", err)
		}
		d.tokens = append(d.tokens, uint32(t))
	}
	ev.TokenIDs = d.tokens[start:]
	return nil
}

// optHash reads a block hash: uint64, int64 (its bits) or bytes (the last
// 8, big-endian); nil reads as absent.
func (d *Decoder) optHash() (uint64, bool, error) {
	c, err := d.dec.PeekCode()
	if err != nil {
		return 0, false, err
	}
	switch {
	case c == msgpcode.Nil:
		return 0, false, d.dec.DecodeNil()
	case msgpcode.IsBin(c):
		n, err := d.dec.DecodeBytesLen()
		if err != nil {
			return 0, false, err
		}
		if n < 0 || n > d.r.Len() || n > 1024 {
			return 0, false, fmt.Errorf("hash of %d bytes", n)
		}
		var buf [1024]byte
		b := buf[:n]
		if err := d.dec.ReadFull(b); err != nil {
			return 0, false, err
		}
		var last [8]byte
		copy(last[8-min(n, 8):], b[max(n-8, 0):])
		return binary.BigEndian.Uint64(last[:]), true, nil
	case isInt(c):
		if c == msgpcode.Uint64 {
			v, err := d.dec.DecodeUint64()
			return v, err == nil, err
		}
		v, err := d.dec.DecodeInt64()
		return uint64(v), err == nil, err
	}
	return 0, false, fmt.Errorf("hash has msgpack code %#x", c)
}

// optInt reads an integer or nil (absent).
func (d *Decoder) optInt() (int, bool, error) {
	c, err := d.dec.PeekCode()
	if err != nil {
		return 0, false, err
	}
	if c == msgpcode.Nil {
		return 0, false, d.dec.DecodeNil()
	}
	if !isInt(c) {
		return 0, false, fmt.Errorf("msgpack code %#x is not an integer", c)
	}
	v, err := d.dec.DecodeInt64()
	if err != nil {
		return 0, false, err
	}
	if int64(int(v)) != v {
		return 0, false, fmt.Errorf("integer %d out of range", v)
	}
	return int(v), true, nil
}

func (d *Decoder) optString() (string, error) {
	c, err := d.dec.PeekCode()
	if err != nil {
		return "", err
	}
	if c == msgpcode.Nil {
		return "", d.dec.DecodeNil()
	}
	if !msgpcode.IsString(c) {
		return "", fmt.Errorf("msgpack code %#x is not a string", c)
	}
	n, err := d.dec.DecodeBytesLen()
	if err != nil {
		return "", err
	}
	if n > d.r.Len() || n > 4096 {
		return "", fmt.Errorf("string of %d bytes", n)
	}
	b := make([]byte, n)
	if err := d.dec.ReadFull(b); err != nil {
		return "", err
	}
	return string(b), nil
}

func (d *Decoder) float() (float64, error) {
	c, err := d.dec.PeekCode()
	if err != nil {
		return 0, err
	}
	if c != msgpcode.Float && c != msgpcode.Double && !isInt(c) {
		return 0, fmt.Errorf("msgpack code %#x is not a number", c)
	}
	return d.dec.DecodeFloat64()
}

// maxDepth bounds the nesting of values the decoder skips: a payload of
// nested one-element arrays must not recurse once per byte.
const maxDepth = 32

// skip drops n trailing values a newer engine added. Containers are read
// element by element, so a huge claimed length fails at the payload's end
// without allocating, and nesting is bounded.
func (d *Decoder) skip(n int) error {
	for range max(n, 0) {
		if err := d.skipValue(0); err != nil {
			return fmt.Errorf("extra field: %w", err)
		}
	}
	return nil
}

func (d *Decoder) skipValue(depth int) error {
	if depth > maxDepth {
		return errors.New("values nested too deeply")
	}
	c, err := d.dec.PeekCode()
	if err != nil {
		return err
	}
	var n int
	switch {
	case msgpcode.IsFixedArray(c) || c == msgpcode.Array16 || c == msgpcode.Array32:
		if n, err = d.dec.DecodeArrayLen(); err != nil {
			return err
		}
	case msgpcode.IsFixedMap(c) || c == msgpcode.Map16 || c == msgpcode.Map32:
		if n, err = d.dec.DecodeMapLen(); err != nil {
			return err
		}
		n *= 2
	default:
		return d.dec.Skip()
	}
	if n > d.r.Len() {
		return fmt.Errorf("container of %d elements exceeds the payload", n)
	}
	for range n {
		if err := d.skipValue(depth + 1); err != nil {
			return err
		}
	}
	return nil
}

func isInt(c byte) bool {
	if msgpcode.IsFixedNum(c) {
		return true
	}
	switch c {
	case msgpcode.Uint8, msgpcode.Uint16, msgpcode.Uint32, msgpcode.Uint64,
		msgpcode.Int8, msgpcode.Int16, msgpcode.Int32, msgpcode.Int64:
		return true
	}
	return false
}
