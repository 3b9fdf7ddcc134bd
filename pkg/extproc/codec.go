package extproc

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"

	"github.com/igw-dev/igw/internal/bufpool"
)

// codec is gRPC's protobuf codec over a pool that does not zero buffers.
// gRPC's own codec takes its marshal and message-assembly buffers from
// mem.DefaultBufferPool, which zeroes every buffer it lends; the codec
// then overwrites every byte it hands on, so with request bodies of
// hundreds of kilobytes (each echoed back) the zeroing was about 5% of the
// picker's CPU (docs/performance.md). Same wire format, same name ("proto"),
// so it serves any ext_proc client.
type codec struct{ pool *bufpool.GRPC }

var _ encoding.CodecV2 = codec{}

func (codec) Name() string { return "proto" }

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	m := protoMessage(v)
	if m == nil {
		return nil, fmt.Errorf("extproc: cannot marshal %T: not a protobuf message", v)
	}
	// Size first: MarshalAppend with UseCachedSize reuses what Size
	// computed (the message is not changed in between).
	size := proto.Size(m)
	opts := proto.MarshalOptions{UseCachedSize: true}
	if mem.IsBelowBufferPoolingThreshold(size) {
		b, err := opts.Marshal(m)
		if err != nil {
			return nil, fmt.Errorf("extproc: marshal %T: %w", v, err)
		}
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	buf := c.pool.Get(size)
	b, err := opts.MarshalAppend((*buf)[:0], m)
	if err != nil {
		c.pool.Put(buf)
		return nil, fmt.Errorf("extproc: marshal %T: %w", v, err)
	}
	*buf = b
	return mem.BufferSlice{mem.NewBuffer(buf, c.pool)}, nil
}

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	m := protoMessage(v)
	if m == nil {
		return fmt.Errorf("extproc: cannot unmarshal into %T: not a protobuf message", v)
	}
	buf := data.MaterializeToBuffer(c.pool)
	defer buf.Free()
	if err := proto.Unmarshal(buf.ReadOnlyData(), m); err != nil {
		return fmt.Errorf("extproc: unmarshal %T: %w", v, err)
	}
	return nil
}

func protoMessage(v any) proto.Message {
	switch v := v.(type) {
	case protoadapt.MessageV2:
		return v
	case protoadapt.MessageV1:
		return protoadapt.MessageV2Of(v)
	}
	return nil
}
