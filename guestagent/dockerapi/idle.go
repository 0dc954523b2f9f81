package dockerapi

import (
	"context"
	"net/http"
	"runtime/debug"
	"sync/atomic"
	"time"
)

// TrimWhenIdle wraps h so that, once no request has started or ended for
// idle, the process gives its free memory back to the OS (once per idle
// spell). A pull or a load leaves megabytes of garbage and buffers that
// Go's scavenger returns only slowly; an engine that sits idle on a
// laptop between bursts of work should not keep them. Long streams
// (events, logs -f, attach) do not count as activity once they started.
func TrimWhenIdle(ctx context.Context, h http.Handler, idle time.Duration) http.Handler {
	return trimWhenIdle(ctx, h, idle, debug.FreeOSMemory)
}

func trimWhenIdle(ctx context.Context, h http.Handler, idle time.Duration, free func()) http.Handler {
	t := &idleTrimmer{h: h}
	t.touch()
	go func() {
		tick := time.NewTicker(idle / 4)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if time.Since(time.Unix(0, t.last.Load())) >= idle && t.pending.CompareAndSwap(true, false) {
				free()
			}
		}
	}()
	return t
}

type idleTrimmer struct {
	h       http.Handler
	last    atomic.Int64 // UnixNano of the last request start or end
	pending atomic.Bool  // there was activity since the last trim
}

func (t *idleTrimmer) touch() {
	t.last.Store(time.Now().UnixNano())
	t.pending.Store(true)
}

func (t *idleTrimmer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	t.touch()
	defer t.touch()
	t.h.ServeHTTP(w, r)
}
