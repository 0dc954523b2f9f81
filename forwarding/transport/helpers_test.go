package transport

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"
)

// testLogger logs through t until the test ends, and drops lines that
// goroutines emit afterwards.
func testLogger(t testing.TB) *slog.Logger {
	w := &testLogWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testLogWriter struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
}

func (w *testLogWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(string(bytes.TrimRight(b, "\n")))
	}
	return len(b), nil
}

// fastTiming shortens the protocol's timers for tests.
func fastTiming() serialTiming {
	t := defaultSerialTiming()
	t.syncInterval = 10 * time.Millisecond
	t.eofPollInterval = 5 * time.Millisecond
	t.reackInterval = 200 * time.Millisecond
	t.retryMin = 5 * time.Millisecond
	t.retryMax = 100 * time.Millisecond
	t.redialPause = 10 * time.Millisecond
	t.readyTimeout = 5 * time.Second
	t.headerTimeout = 5 * time.Second
	return t
}

// randBytes returns n pseudo-random bytes from seed.
func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// serveEcho echoes every connection accepted on l until l is closed.
func serveEcho(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			io.Copy(c, c)
			if cw, ok := c.(halfCloser); ok {
				cw.CloseWrite()
			}
		}()
	}
}

// echoRoundTrip writes n random bytes to c while reading the echo, and
// checks that the same bytes come back.
func echoRoundTrip(c net.Conn, seed uint64, n int) error {
	want := randBytes(seed, n)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(want)
		if err == nil {
			err = c.(halfCloser).CloseWrite()
		}
		errc <- err
	}()
	h := sha256.New()
	got, err := io.Copy(h, c)
	if err != nil {
		return err
	}
	if err := <-errc; err != nil {
		return err
	}
	if got != int64(n) {
		return errors.New("echo length differs")
	}
	if !bytes.Equal(h.Sum(nil), sha256Sum(want)) {
		return errors.New("echo content differs")
	}
	return nil
}

func sha256Sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

// waitFor polls cond until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
