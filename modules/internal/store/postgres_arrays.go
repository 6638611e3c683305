package store

import (
	"encoding/binary"
	"sync"
)

// The capture path sends each group commit as binary array parameters it
// encodes itself, into a buffer kept between batches. pgx would encode the
// same bytes, but through per-call buffers that it caps at 256 bytes and
// regrows by doubling: for a batch of 1.3 KB webhooks that was ~13 KB of
// garbage per row, the largest source of GC work in the Caddy process at
// 10,000 captures/s. The format is PostgreSQL's array_send: a header, then
// per element its length and bytes.

// PostgreSQL type OIDs of the array elements we send.
const (
	oidBytea = 17
	oidInt8  = 20
	oidInt4  = 23
	oidText  = 25
)

// arrayEncoder builds the parameters of one statement in one buffer.
type arrayEncoder struct {
	buf    []byte
	spans  [][2]int // start and end of each parameter in buf
	params [][]byte
}

var arrayEncoders = sync.Pool{New: func() any { return new(arrayEncoder) }}

// maxPooledEncoder keeps a batch of unusually large bodies from pinning
// its buffer in the pool.
const maxPooledEncoder = 4 << 20

func getArrayEncoder() *arrayEncoder {
	e := arrayEncoders.Get().(*arrayEncoder)
	e.buf, e.spans, e.params = e.buf[:0], e.spans[:0], e.params[:0]
	return e
}

func (e *arrayEncoder) release() {
	if cap(e.buf) > maxPooledEncoder {
		return
	}
	clear(e.params) // do not keep the batch's bytes reachable
	arrayEncoders.Put(e)
}

// begin starts a one-dimensional array of n elements of type oid.
func (e *arrayEncoder) begin(oid uint32, n int) int {
	start := len(e.buf)
	e.buf = binary.BigEndian.AppendUint32(e.buf, 1) // dimensions
	e.buf = binary.BigEndian.AppendUint32(e.buf, 0) // no NULLs
	e.buf = binary.BigEndian.AppendUint32(e.buf, oid)
	e.buf = binary.BigEndian.AppendUint32(e.buf, uint32(n))
	e.buf = binary.BigEndian.AppendUint32(e.buf, 1) // lower bound
	return start
}

func (e *arrayEncoder) end(start int) { e.spans = append(e.spans, [2]int{start, len(e.buf)}) }

func (e *arrayEncoder) element(b []byte) {
	e.buf = binary.BigEndian.AppendUint32(e.buf, uint32(len(b)))
	e.buf = append(e.buf, b...)
}

func (e *arrayEncoder) textElement(s string) {
	e.buf = binary.BigEndian.AppendUint32(e.buf, uint32(len(s)))
	e.buf = append(e.buf, s...)
}

// text adds a text[] parameter of value(i) for i in [0, n).
func (e *arrayEncoder) text(n int, value func(i int) string) {
	start := e.begin(oidText, n)
	for i := range n {
		e.textElement(value(i))
	}
	e.end(start)
}

// int8 adds a bigint[] parameter.
func (e *arrayEncoder) int8(n int, value func(i int) int64) {
	start := e.begin(oidInt8, n)
	for i := range n {
		e.buf = binary.BigEndian.AppendUint32(e.buf, 8)
		e.buf = binary.BigEndian.AppendUint64(e.buf, uint64(value(i)))
	}
	e.end(start)
}

// int4 adds an integer[] parameter.
func (e *arrayEncoder) int4(n int, value func(i int) int32) {
	start := e.begin(oidInt4, n)
	for i := range n {
		e.buf = binary.BigEndian.AppendUint32(e.buf, 4)
		e.buf = binary.BigEndian.AppendUint32(e.buf, uint32(value(i)))
	}
	e.end(start)
}

// bytea adds a bytea[] parameter.
func (e *arrayEncoder) bytea(n int, value func(i int) []byte) {
	start := e.begin(oidBytea, n)
	for i := range n {
		e.element(value(i))
	}
	e.end(start)
}

// values returns the parameters; valid until the next use of e.
func (e *arrayEncoder) values() [][]byte {
	for _, s := range e.spans {
		e.params = append(e.params, e.buf[s[0]:s[1]])
	}
	return e.params
}
