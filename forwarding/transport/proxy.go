package transport

import (
	"context"
	"net"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/yamux"
)

// halfCloser is a conn that can end its write side and keep reading:
// *net.TCPConn, *net.UnixConn, *tls.Conn, *vsock.Conn and this package's
// serial streams.
type halfCloser interface {
	CloseWrite() error
}

// Proxy copies a to b and b to a until both directions are done, then closes
// both conns. When one side ends its writes (EOF), Proxy passes the half-close
// on with CloseWrite, so request/response protocols that close their write
// side first still get their answer. A conn that cannot half-close is closed
// outright instead, which ends the other direction too.
//
// An error in either direction, or ctx being done, closes both conns at once.
// Proxy returns the first error, ctx's error when ctx ended it, or nil.
func Proxy(ctx context.Context, a, b net.Conn) error {
	var (
		closeOnce sync.Once
		forced    atomic.Bool // a conn was closed on purpose: later errors are expected
	)
	closeBoth := func() {
		closeOnce.Do(func() {
			a.Close()
			b.Close()
		})
	}
	stop := context.AfterFunc(ctx, func() {
		forced.Store(true)
		closeBoth()
	})

	errc := make(chan error, 2)
	copyHalf := func(dst, src net.Conn) {
		_, err := copyStream(dst, src)
		if err != nil {
			errc <- err
			return
		}
		if !closeWrite(dst) {
			forced.Store(true)
			closeBoth()
		}
		errc <- nil
	}
	// Both on goroutines of their own: this one must stay free to close
	// both conns on the first error, which unblocks the other copy.
	go copyHalf(b, a)
	go copyHalf(a, b)

	var first error
	for range 2 {
		err := <-errc
		if err == nil || first != nil {
			continue
		}
		if forced.Load() {
			continue
		}
		first = err
		forced.Store(true)
		closeBoth()
	}
	closeBoth()
	if !stop() {
		// ctx ended the copy (or ended just after it): say so.
		return ctx.Err()
	}
	return first
}

// closeWrite ends c's write side and reports whether c could do it.
func closeWrite(c net.Conn) bool {
	switch c := c.(type) {
	case halfCloser:
		c.CloseWrite()
		return true
	case *yamux.Stream:
		// A bare yamux stream's Close is a half-close: it sends FIN and
		// keeps reading until the peer's FIN.
		c.Close()
		return true
	}
	return false
}
