package store

import (
	"bytes"
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sentrysilo/caddy-silo/integration_tests/pgtest"
)

// TestBindLoanComesBackOnlyWhenReleased runs statements on a real
// connection with the Bind buffer lent (lendBind), small ones, whose
// flush lets pgx keep its buffer, and large ones, whose flush drops it.
// The buffer must come back to the encoder only in the second case: had
// it come back while the frontend still held it, the next message on the
// connection would be written into memory the encoder reuses. Every
// statement echoes its parameter, so a corrupted message shows.
func TestBindLoanComesBackOnlyWhenReleased(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pgtest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	const name = "silo_bind_loan_test"
	sd, err := conn.Prepare(ctx, name, `SELECT length($1::bytea), md5($1::bytea)`)
	if err != nil {
		t.Fatal(err)
	}
	e := getArrayEncoder()
	defer e.release()
	for i, tc := range []struct {
		size     int
		returned bool
	}{
		{100, false},    // the frontend keeps a buffer of <= 1 KiB: still ours, must not come back
		{200_000, true}, // dropped after the flush: back to the encoder
		{10, false},
		{50, false},
		{300_000, true},
		{300_000, true}, // the returned buffer lent again
	} {
		body := bytes.Repeat([]byte{byte('a' + i)}, tc.size)
		e.buf, e.spans = e.buf[:0], e.spans[:0]
		e.buf = append(e.buf, body...)
		e.end(0)
		params := e.values()
		before := e.bind
		loan := e.lendBind(conn.PgConn(), name, params)
		rr := conn.PgConn().ExecStatement(ctx, sd, params, binaryParams, nil)
		var got []string
		for rr.NextRow() {
			for _, v := range rr.Values() {
				got = append(got, string(v))
			}
		}
		if _, err := rr.Close(); err != nil {
			t.Fatalf("statement %d: %v", i, err)
		}
		e.returnBind(conn.PgConn(), loan)
		if !loan.lent {
			t.Fatalf("statement %d: the buffer was not lent", i)
		}
		if (e.bind != nil) != tc.returned {
			t.Fatalf("statement %d (%d bytes): buffer returned %v, want %v", i, tc.size, e.bind != nil, tc.returned)
		}
		if tc.returned && before != nil && cap(e.bind) < tc.size {
			t.Fatalf("statement %d: returned buffer too small (%d)", i, cap(e.bind))
		}
		var want string
		if err := conn.QueryRow(ctx, `SELECT md5($1::bytea)`, body).Scan(&want); err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || got[0] != strconv.Itoa(tc.size) || got[1] != want {
			t.Fatalf("statement %d: got %q, want [%d %s]", i, got, tc.size, want)
		}
		// Overwrite whatever the encoder holds now: a buffer the frontend
		// still used would corrupt the next statement on conn.
		for j := range e.bind[:cap(e.bind)] {
			e.bind[:cap(e.bind)][j] = 0xff
		}
		if err := conn.Ping(ctx); err != nil {
			t.Fatalf("after statement %d the connection is broken: %v", i, err)
		}
	}
}
