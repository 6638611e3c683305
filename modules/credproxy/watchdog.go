package credproxy

import (
	"context"
	"errors"
	"net/http/httptrace"
	"sync"
	"time"
)

// errReadTimeout is the cancel cause when the third party stays silent
// for longer than the read timeout.
var errReadTimeout = errors.New("third party read timeout")

// watchdog is the read timeout of requests' (connect, read) pair: the
// longest the third party may stay silent, first for the response
// headers, then between body chunks. It cancels the call's context when it
// fires.
type watchdog struct {
	read  time.Duration
	timer *time.Timer
	// trace restarts the clock once the request is written: from then
	// on only the read timeout counts.
	trace *httptrace.ClientTrace
}

func newWatchdog(first, read time.Duration, cancel context.CancelCauseFunc) *watchdog {
	w := &watchdog{read: read, timer: time.AfterFunc(first, func() { cancel(errReadTimeout) })}
	w.trace = &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { w.timer.Reset(read) }}
	return w
}

func (w *watchdog) reset(d time.Duration) { w.timer.Reset(d) }
func (w *watchdog) stop()                 { w.timer.Stop() }

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}
