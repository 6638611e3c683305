package store

import (
	"encoding/binary"
	"errors"
	"slices"
	"sync"

	"github.com/jackc/pgx/v5/pgconn"
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
	bind   []byte // the Bind message's buffer, when not lent (lendBind)
	loan   bindLoan
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
	if cap(e.buf) > maxPooledEncoder || cap(e.bind) > maxPooledEncoder {
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

// textAppend adds a text[] parameter whose element i is what
// appendValue(b, i) appends to b, written in place.
func (e *arrayEncoder) textAppend(n int, appendValue func(b []byte, i int) []byte) {
	start := e.begin(oidText, n)
	for i := range n {
		at := len(e.buf)
		e.buf = append(e.buf, 0, 0, 0, 0)
		e.buf = appendValue(e.buf, i)
		binary.BigEndian.PutUint32(e.buf[at:], uint32(len(e.buf)-at-4))
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
	e.params = e.params[:0]
	for _, s := range e.spans {
		e.params = append(e.params, e.buf[s[0]:s[1]])
	}
	return e.params
}

// The Bind message that carries those parameters is built by pgproto3's
// Frontend, which appends every message to a write buffer and drops that
// buffer after any flush above 1 KiB: each group commit grew a fresh one
// by doubling from 1 KiB, ~2-4x the batch's bytes in garbage and copies,
// the largest allocation of the Caddy process under capture (17% of its
// bytes, pgproto3.(*Bind).Encode). So the encoder keeps a second buffer,
// lent to the frontend for the statement: bindLoan is a message that
// encodes to no byte but puts that buffer in place of the empty one the
// frontend holds. After the statement, bufferProbe (another message of no
// byte) shows whether the frontend still holds it; it comes back only
// when it does not, which pgx's flush rule makes the usual case. On a
// closed connection (whose closing goroutine may still write) or when
// the probe cannot tell, the buffer is left to the frontend and the
// collector: a loan never ends in two writers of one buffer.

// lendBind lends e's bind buffer, with room for the Bind of params, to
// conn's frontend for one statement.
func (e *arrayEncoder) lendBind(conn *pgconn.PgConn, statement string, params [][]byte) *bindLoan {
	n := 64 + len(statement) // message header, portal, names, format and result codes
	for _, p := range params {
		n += 4 + len(p)
	}
	l := &e.loan
	*l = bindLoan{buf: slices.Grow(e.bind[:0], n)}
	e.bind = nil // the frontend's until returned
	conn.Frontend().Send(l)
	return l
}

// returnBind takes the buffer back from conn's frontend after the
// statement, if the frontend let go of it.
func (e *arrayEncoder) returnBind(conn *pgconn.PgConn, l *bindLoan) {
	if !l.lent {
		e.bind = l.buf // never handed over
		return
	}
	if conn.IsClosed() {
		return
	}
	p := bufferProbe{of: l.buf}
	conn.Frontend().Send(&p)
	if p.seen && !p.held {
		e.bind = l.buf[:0]
	}
}

// bindLoan puts buf in place of the frontend's empty write buffer. It
// lends nothing when the frontend has bytes pending.
type bindLoan struct {
	buf  []byte
	lent bool
}

func (*bindLoan) Frontend()           {}
func (*bindLoan) Decode([]byte) error { return errors.New("store: bindLoan is not a received message") }
func (l *bindLoan) Encode(dst []byte) ([]byte, error) {
	if len(dst) > 0 {
		return dst, nil
	}
	l.lent = true
	return l.buf[:0], nil
}

// bufferProbe reports whether the frontend's write buffer is of's array.
type bufferProbe struct {
	of         []byte
	seen, held bool
}

func (*bufferProbe) Frontend() {}
func (*bufferProbe) Decode([]byte) error {
	return errors.New("store: bufferProbe is not a received message")
}
func (p *bufferProbe) Encode(dst []byte) ([]byte, error) {
	p.seen = true
	p.held = cap(dst) > 0 && cap(p.of) > 0 && &dst[:1][0] == &p.of[:1][0]
	return dst, nil
}
