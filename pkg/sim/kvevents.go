package sim

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zeromq/zmq4"
	"github.com/vmihailenco/msgpack/v5"
)

// kvMedium is the storage medium vLLM names in its events for GPU memory.
const kvMedium = "GPU"

// kvPublisher publishes one replica's KV-cache events as vLLM's
// ZmqEventPublisher does (REFERENCE §10): a PUB socket, messages of three
// frames [topic, sequence number as 8-byte big-endian, msgpack batch].
//
// The engine hands it each step's events under the engine's lock; enqueue
// numbers the batch there and never blocks. A full queue drops the batch
// but its number is spent, so a subscriber sees the loss as a gap, which is
// what vLLM's subscribers are built to handle.
type kvPublisher struct {
	sock      zmq4.Socket
	topic     []byte
	blockSize int
	addr      string // tcp://host:port the socket is bound to
	log       *slog.Logger

	seq     uint64 // next sequence number; guarded by the engine's lock
	queue   chan kvBatch
	dropped atomic.Uint64
	// dropNext makes tests lose batches on purpose (a gap on the wire).
	dropNext atomic.Int64
	done     chan struct{}
	once     sync.Once
}

type kvBatch struct {
	seq    uint64
	ts     float64
	events []kvEvent
}

// newKVPublisher binds a PUB socket for replica number replica of cfg,
// whose HTTP address is httpAddr.
func newKVPublisher(cfg Config, replica int, httpAddr string, log *slog.Logger) (*kvPublisher, error) {
	k := cfg.KVEvents.withDefaults()
	host, port, err := k.hostPort()
	if err != nil {
		return nil, err
	}
	if port != 0 {
		port += replica
	}
	ep := "tcp://" + net.JoinHostPort(host, strconv.Itoa(port))
	sock := zmq4.NewPub(context.Background())
	if err := sock.Listen(ep); err != nil {
		_ = sock.Close()
		return nil, fmt.Errorf("sim replica %d: kv events on %s: %w", replica, ep, err)
	}
	if err := sock.SetOption(zmq4.OptionHWM, k.HWM); err != nil {
		_ = sock.Close()
		return nil, fmt.Errorf("sim replica %d: kv events hwm: %w", replica, err)
	}
	bound := sock.Addr().(*net.TCPAddr)
	bhost := host
	if bhost == "" || bhost == "*" || bound.IP.IsUnspecified() {
		bhost = "127.0.0.1"
	}
	topic := k.Topic
	if topic == "" {
		topic = "kv@" + httpAddr + "@" + cfg.ServedName()
	}
	p := &kvPublisher{
		sock:      sock,
		topic:     []byte(topic),
		blockSize: cfg.BlockSize,
		addr:      "tcp://" + net.JoinHostPort(bhost, strconv.Itoa(bound.Port)),
		log:       log,
		queue:     make(chan kvBatch, k.MaxQueueSize),
		done:      make(chan struct{}),
	}
	go p.run()
	return p, nil
}

// enqueue numbers a batch and queues it for sending; called with the
// engine's lock held, so batches are numbered in the order they happened.
func (p *kvPublisher) enqueue(events []kvEvent) {
	b := kvBatch{seq: p.seq, ts: float64(time.Now().UnixNano()) / 1e9, events: events}
	p.seq++
	if p.dropNext.Load() > 0 {
		p.dropNext.Add(-1)
		p.dropped.Add(1)
		return
	}
	select {
	case p.queue <- b:
	default:
		p.dropped.Add(1)
	}
}

func (p *kvPublisher) run() {
	defer close(p.done)
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.UseCompactInts(true)
	for b := range p.queue {
		buf.Reset()
		if err := encodeKVBatch(enc, b, p.blockSize); err != nil {
			p.log.Error("kv events: encode", "err", err)
			continue
		}
		var seq [8]byte
		binary.BigEndian.PutUint64(seq[:], b.seq)
		payload := bytes.Clone(buf.Bytes())
		if err := p.sock.Send(zmq4.NewMsgFrom(p.topic, seq[:], payload)); err != nil {
			p.log.Warn("kv events: send", "err", err)
		}
	}
}

// close stops accepting batches (the engine has stopped), sends what is
// queued and closes the socket.
func (p *kvPublisher) close() error {
	var err error
	p.once.Do(func() {
		close(p.queue)
		<-p.done
		err = p.sock.Close()
	})
	return err
}

// encodeKVBatch writes vLLM's EventBatch, array-encoded as msgspec does
// with omit_defaults: [ts, events] (data_parallel_rank, None here, is
// omitted), each event an array tagged by its class name whose trailing
// fields equal to their defaults (None) are omitted:
//
//	["BlockStored", block_hashes, parent_block_hash, token_ids, block_size, lora_id, medium, lora_name]
//	["BlockRemoved", block_hashes, medium]
//	["AllBlocksCleared"]
func encodeKVBatch(enc *msgpack.Encoder, b kvBatch, blockSize int) error {
	w := &errWriter{enc: enc}
	w.arrayLen(2)
	w.do(enc.EncodeFloat64(b.ts))
	w.arrayLen(len(b.events))
	for _, ev := range b.events {
		switch ev.kind {
		case kvBlockStored:
			if ev.adapter == "" {
				w.arrayLen(7)
			} else {
				w.arrayLen(8)
			}
			w.do(enc.EncodeString("BlockStored"))
			w.hashes(ev.hashes)
			if ev.hasParent {
				w.do(enc.EncodeUint(ev.parent))
			} else {
				w.do(enc.EncodeNil())
			}
			w.arrayLen(len(ev.tokens))
			for _, t := range ev.tokens {
				w.do(enc.EncodeUint(uint64(t)))
			}
			w.do(enc.EncodeInt(int64(blockSize)))
			if ev.adapter == "" {
				w.do(enc.EncodeNil())
				w.do(enc.EncodeString(kvMedium))
			} else {
				w.do(enc.EncodeInt(loraID(ev.adapter)))
				w.do(enc.EncodeString(kvMedium))
				w.do(enc.EncodeString(ev.adapter))
			}
		case kvBlockRemoved:
			w.arrayLen(3)
			w.do(enc.EncodeString("BlockRemoved"))
			w.hashes(ev.hashes)
			w.do(enc.EncodeString(kvMedium))
		case kvAllBlocksCleared:
			w.arrayLen(1)
			w.do(enc.EncodeString("AllBlocksCleared"))
		}
	}
	if w.err != nil {
		return fmt.Errorf("kv event batch %d: %w", b.seq, w.err)
	}
	return nil
}

// loraID is the adapter's integer id in events (vLLM's lora_int_id): a
// stable positive number derived from its name, the same on every replica.
func loraID(adapter string) int64 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(adapter))
	return int64(h.Sum32()&0x7fffffff) + 1
}

// errWriter keeps the first encoding error so the encoder reads as a list.
type errWriter struct {
	enc *msgpack.Encoder
	err error
}

func (w *errWriter) do(err error) {
	if w.err == nil {
		w.err = err
	}
}

func (w *errWriter) arrayLen(n int) { w.do(w.enc.EncodeArrayLen(n)) }

func (w *errWriter) hashes(hs []uint64) {
	w.arrayLen(len(hs))
	for _, h := range hs {
		w.do(w.enc.EncodeUint(h))
	}
}
