package transport

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a bytes.Buffer that a test may read while a copy writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Len()
}

func (l *lockedBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.b.Bytes())
}

func setLargeIdle(t *testing.T, d time.Duration) {
	old := largeIdle
	largeIdle = d
	t.Cleanup(func() { largeIdle = old })
}

// TestCopyStreamBuffers: a bulk transfer borrows the large buffer, a pause
// gives it back while the connection stays open, small writes after that
// still arrive, and every byte arrives in order. Over a unix socket, and
// over a serial transport stream and a bare yamux stream, whose deadlines
// are their own code.
func TestCopyStreamBuffers(t *testing.T) {
	setLargeIdle(t, 300*time.Millisecond)
	for _, kind := range []string{"unix", "serial", "yamux"} {
		t.Run(kind, func(t *testing.T) {
			sender, src := streamPair(t, kind)
			testCopyStreamBuffers(t, sender, src)
		})
	}
}

// streamPair returns the two ends of a stream of the given kind.
func streamPair(t *testing.T, kind string) (net.Conn, net.Conn) {
	t.Helper()
	switch kind {
	case "serial":
		return serialStreamPair(t)
	case "yamux":
		a, b := connPair(t, "unix")
		cs, ss := yamuxSessions(t, a, b)
		c, err := cs.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte{0}); err != nil { // yamux opens lazily
			t.Fatal(err)
		}
		s, err := ss.AcceptStream()
		if err != nil {
			t.Fatal(err)
		}
		var b0 [1]byte
		if _, err := io.ReadFull(s, b0[:]); err != nil {
			t.Fatal(err)
		}
		return c, s
	}
	return connPair(t, kind)
}

func testCopyStreamBuffers(t *testing.T, sender, src net.Conn) {
	if n := largeHeld.Load(); n != 0 {
		t.Fatalf("%d large buffers held before the test", n)
	}
	var dst lockedBuffer
	type result struct {
		n   int64
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := copyStream(&dst, src)
		done <- result{n, err}
	}()

	bulk := randBytes(1, 8<<20)
	if _, err := sender.Write(bulk); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the bulk bytes", func() bool { return dst.Len() == len(bulk) })
	if n := largeHeld.Load(); n != 1 {
		t.Errorf("after 8 MiB in one write, %d large buffers held, want 1", n)
	}
	waitFor(t, 10*time.Second, "the large buffer to go back on a pause", func() bool { return largeHeld.Load() == 0 })

	tail := []byte("still here")
	for _, b := range tail {
		if _, err := sender.Write([]byte{b}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "the small writes", func() bool { return dst.Len() == len(bulk)+len(tail) })
	if largeHeld.Load() != 0 {
		t.Error("one-byte writes took the large buffer")
	}
	closeWrite(sender)
	r := <-done
	if r.err != nil {
		t.Fatalf("copyStream: %v", r.err)
	}
	want := append(bulk, tail...)
	if r.n != int64(len(want)) || !bytes.Equal(dst.Bytes(), want) {
		t.Fatalf("copied %d bytes, want %d, content equal: %v", r.n, len(want), bytes.Equal(dst.Bytes(), want))
	}
}

// noDeadlineConn is a conn whose read deadline cannot be set.
type noDeadlineConn struct{ net.Conn }

func (noDeadlineConn) SetReadDeadline(time.Time) error { return errors.New("no deadlines") }

// TestCopyStreamWithoutDeadlines: a conn without read deadlines is copied
// in full through the small buffer: the large one could not be given back.
func TestCopyStreamWithoutDeadlines(t *testing.T) {
	sender, src := connPair(t, "unix")
	var dst lockedBuffer
	done := make(chan error, 1)
	go func() {
		_, err := copyStream(&dst, noDeadlineConn{src})
		done <- err
	}()
	bulk := randBytes(2, 4<<20)
	go func() {
		sender.Write(bulk)
		sender.(halfCloser).CloseWrite()
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dst.Bytes(), bulk) {
		t.Fatalf("copied %d bytes, want the %d sent", dst.Len(), len(bulk))
	}
	if n := largeHeld.Load(); n != 0 {
		t.Errorf("%d large buffers held", n)
	}
}

// failingWriter fails once it has taken limit bytes.
type failingWriter struct{ limit, n int }

var errWriterFull = errors.New("writer full")

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.n+len(p) > w.limit {
		return 0, errWriterFull
	}
	w.n += len(p)
	return len(p), nil
}

// TestCopyStreamWriteErrorClearsDeadline: a write error ends the copy with
// that error, returns the large buffer, and leaves no read deadline behind
// on src for its next user.
func TestCopyStreamWriteErrorClearsDeadline(t *testing.T) {
	setLargeIdle(t, 50*time.Millisecond)
	sender, src := connPair(t, "unix")
	// The sender's bulk write finishes once the copy and then the drain
	// below have taken it; the late bytes come well after largeIdle.
	go func() {
		sender.Write(randBytes(3, 8<<20))
		time.Sleep(4 * largeIdle)
		sender.Write([]byte("late"))
		sender.Close()
	}()
	_, err := copyStream(&failingWriter{limit: 2 << 20}, src)
	if !errors.Is(err, errWriterFull) {
		t.Fatalf("copyStream: %v, want the writer's error", err)
	}
	if n := largeHeld.Load(); n != 0 {
		t.Errorf("%d large buffers held after the copy ended", n)
	}
	// A read deadline left set would fail this read before "late".
	b, err := io.ReadAll(src)
	if err != nil {
		t.Fatalf("reading src after the copy: %v", err)
	}
	if !bytes.HasSuffix(b, []byte("late")) {
		t.Errorf("src's later read ended without the late bytes (%d bytes)", len(b))
	}
}
