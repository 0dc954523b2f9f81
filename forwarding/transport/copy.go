package transport

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Buffer sizes of copyStream. A connection that trickles (a shell, an HTTP
// exchange, a database protocol) is served from a small buffer. One that
// streams (a download, an upload, an image push) borrows a large one,
// which cuts the reads, writes and wake-ups per byte: on a machine where
// a context switch is dear, as under a hypervisor, that is most of the
// cost of a forwarded byte. With bench/forward's two-process layout here,
// 1 MiB copies over 1 MiB unix socket buffers (see unixBuffer) moved
// 1.0-1.3 GiB/s, where splice(2) had moved 0.8-0.9.
const (
	smallCopyBuffer = 32 << 10
	largeCopyBuffer = 1 << 20
)

// largeIdle is how long a streaming connection may wait for its next
// bytes before it gives its large buffer back. A variable for tests.
var largeIdle = 200 * time.Millisecond

var (
	smallBuffers = sync.Pool{New: func() any { return new([smallCopyBuffer]byte) }}
	largeBuffers = sync.Pool{New: func() any { return new([largeCopyBuffer]byte) }}
	largeHeld    atomic.Int64 // large buffers out of the pool, for tests
)

// copyStream copies src to dst until src's EOF or an error, as io.Copy
// does, with a buffer that grows while src streams and shrinks when it
// pauses, so a connection with nothing to read never holds more than the
// small buffer. (One whose dst stopped reading keeps what it holds until
// the write goes through or fails, as the kernel keeps its socket buffers.)
//
// It reads with a deadline on src only while it holds the large buffer,
// and clears it before returning; src must not be given a read deadline
// by anyone else meanwhile. A src whose deadline cannot be set keeps the
// small buffer.
func copyStream(dst io.Writer, src net.Conn) (written int64, err error) {
	sb := smallBuffers.Get().(*[smallCopyBuffer]byte)
	defer smallBuffers.Put(sb)
	small := sb[:]
	var large *[largeCopyBuffer]byte
	release := func() {
		if large != nil {
			largeBuffers.Put(large)
			largeHeld.Add(-1)
			large = nil
		}
	}
	defer release()
	defer func() {
		if large != nil {
			src.SetReadDeadline(time.Time{})
		}
	}()
	buf := small
	for {
		if large != nil {
			src.SetReadDeadline(time.Now().Add(largeIdle))
		}
		n, rerr := src.Read(buf)
		if n > 0 {
			nw, werr := dst.Write(buf[:n])
			written += int64(nw)
			if werr != nil {
				return written, werr
			}
			if nw != n {
				return written, io.ErrShortWrite
			}
		}
		switch {
		case rerr == io.EOF:
			return written, nil
		case rerr != nil && large != nil && isTimeout(rerr):
			// The stream paused: back to the small buffer, no deadline.
			if err := src.SetReadDeadline(time.Time{}); err != nil {
				return written, err
			}
			release()
			buf = small
		case rerr != nil:
			return written, rerr
		case large == nil && n == len(small):
			// A full small read: more is waiting, so src streams.
			if src.SetReadDeadline(time.Now().Add(largeIdle)) == nil {
				large = largeBuffers.Get().(*[largeCopyBuffer]byte)
				largeHeld.Add(1)
				buf = large[:]
			}
		}
	}
}

// isTimeout reports a read deadline passing: os.ErrDeadlineExceeded, or a
// net.Error that says it timed out (a bare yamux stream's ErrTimeout).
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}
