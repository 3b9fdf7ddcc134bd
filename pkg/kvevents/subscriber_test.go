package kvevents

import "testing"

// TestSubscriber_SequenceDecidesTrust drives one endpoint's message
// handling directly: in order applies, a jump forward is a gap, a step
// back is a restart, and frames that are not [topic, 8-byte sequence,
// payload] or payloads that do not decode count as lost.
func TestSubscriber_SequenceDecidesTrust(t *testing.T) {
	ix := NewIndex(0)
	s, err := NewSubscriber(Options{Index: ix, MaxPayload: 64})
	if err != nil {
		t.Fatal(err)
	}
	dec, seq, st := NewDecoder(Limits{}), &stream{}, &endpointStats{}
	msg := func(n uint64, events ...any) [][]byte {
		b := make([]byte, 8)
		for i := range 8 {
			b[7-i] = byte(n >> (8 * i))
		}
		return [][]byte{[]byte("kv@a@m"), b, pack(t, []any{1.0, events})}
	}
	store := func(h ...any) any { return []any{"BlockStored", h, nil, []any{}, 16} }
	s.handle("a", msg(7, store(1, 2)), dec, seq, st) // first seen: any number
	s.handle("a", msg(8, store(3)), dec, seq, st)
	if got := ix.Stats("a"); got.Blocks != 3 || got.Uncertain != 0 || st.gaps.Load() != 0 {
		t.Fatalf("in order: %+v, gaps %d", got, st.gaps.Load())
	}
	s.handle("a", msg(10, store(4)), dec, seq, st)
	if got := ix.Stats("a"); got.Uncertain != 3 || st.gaps.Load() != 1 {
		t.Errorf("after a gap: %+v, gaps %d", got, st.gaps.Load())
	}
	s.handle("a", msg(0, store(9)), dec, seq, st)
	if got := ix.Stats("a"); got.Blocks != 1 || got.Uncertain != 0 || st.restarts.Load() != 1 {
		t.Errorf("after a restart: %+v, restarts %d", got, st.restarts.Load())
	}
	bad := [][][]byte{
		{[]byte("kv@a@m"), {0, 0, 0, 0, 0, 0, 1}, {0x90}},              // 7-byte sequence
		{[]byte("kv@a@m"), {0, 0, 0, 0, 0, 0, 0, 2}},                   // two frames
		msg(2, "not an event"),                                         // undecodable
		{[]byte("kv@a@m"), {0, 0, 0, 0, 0, 0, 0, 3}, make([]byte, 65)}, // over MaxPayload
	}
	for i, frames := range bad {
		s.handle("a", frames, dec, seq, st)
		if got := st.malformed.Load(); got != uint64(i+1) {
			t.Errorf("bad message %d: malformed %d", i, got)
		}
	}
	if got := ix.Stats("a"); got.Uncertain != got.Blocks || got.Blocks != 1 {
		t.Errorf("after lost messages: %+v, want every entry uncertain", got)
	}
}
