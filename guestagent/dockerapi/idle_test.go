package dockerapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

func TestTrimWhenIdle(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var frees atomic.Int32
	h := trimWhenIdle(ctx, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), 100*time.Millisecond, func() { frees.Add(1) })

	waitFrees := func(want int32) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for frees.Load() < want {
			if time.Now().After(deadline) {
				t.Fatalf("frees = %d, want %d", frees.Load(), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// Startup counts as activity: one trim once idle, and only one.
	waitFrees(1)
	time.Sleep(400 * time.Millisecond)
	if n := frees.Load(); n != 1 {
		t.Fatalf("frees while idle = %d, want 1", n)
	}
	// Requests keep it from trimming; it trims once they stop.
	for i := 0; i < 10; i++ {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/_ping", nil))
		time.Sleep(30 * time.Millisecond)
	}
	if n := frees.Load(); n != 1 {
		t.Fatalf("frees while busy = %d, want 1", n)
	}
	waitFrees(2)
}
