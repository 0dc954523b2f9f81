package portfwd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/berthvm/berth/forwarding/transport"
)

// Guest-side timeouts. Variables so tests can shorten them.
var (
	// headerTimeout bounds how long a new stream may take to name its
	// target: the host writes the header at once.
	headerTimeout = 10 * time.Second
	// guestDialTimeout bounds the dial of the guest or container address.
	guestDialTimeout = 10 * time.Second
)

// ServeGuest is the guest side of port forwarding: it accepts streams on
// lis (guest port 1025 of the transport), dials the address each names and
// copies bytes both ways, until ctx ends or lis is closed. It closes lis when ctx
// ends, and returns nil then.
//
// Only the host agent can open these streams: the transport is not
// reachable from containers or from the guest's network.
func ServeGuest(ctx context.Context, lis net.Listener, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	stop := context.AfterFunc(ctx, func() { lis.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := lis.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("accepting port-forward streams: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			serveStream(ctx, c, log)
		}()
	}
}

// serveStream handles one stream from the host.
func serveStream(ctx context.Context, c net.Conn, log *slog.Logger) {
	c.SetReadDeadline(time.Now().Add(headerTimeout))
	req, err := readRequest(c)
	if err != nil {
		log.Warn("port-forward stream without a valid request", "err", err)
		c.Close()
		return
	}
	c.SetReadDeadline(time.Time{})
	d := net.Dialer{Timeout: guestDialTimeout}
	target, err := d.DialContext(ctx, req.Proto, req.Addr.String())
	if err != nil {
		log.Debug("port forward: dial failed", "proto", req.Proto, "addr", req.Addr, "err", err)
		writeStatus(c, err)
		closeAfterWrite(c)
		return
	}
	if err := writeStatus(c, nil); err != nil {
		target.Close()
		c.Close()
		return
	}
	switch req.Proto {
	case TCP:
		transport.Proxy(ctx, c, target)
	case UDP:
		spliceUDP(ctx, c, target)
	}
}

// closeAfterWrite ends a stream whose last bytes were just written: a
// half-close first, so the answer is not lost to a reset.
func closeAfterWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		c.SetReadDeadline(time.Now().Add(time.Second))
		io.Copy(io.Discard, c)
	}
	c.Close()
}

// spliceUDP carries framed datagrams between the stream and a connected
// UDP socket until the stream ends or ctx does.
func spliceUDP(ctx context.Context, stream net.Conn, udp net.Conn) {
	var once sync.Once
	closeBoth := func() {
		once.Do(func() {
			stream.Close()
			udp.Close()
		})
	}
	stop := context.AfterFunc(ctx, closeBoth)
	defer stop()
	go func() {
		defer closeBoth()
		buf := make([]byte, maxDatagram)
		var out []byte
		for {
			n, err := udp.Read(buf)
			if err != nil {
				// A refused datagram (ICMP port unreachable) is not the end:
				// the service may come back, as it would for a real client.
				if isPortUnreachable(err) {
					continue
				}
				return
			}
			if out, err = writeFrame(stream, out, buf[:n]); err != nil {
				return
			}
		}
	}()
	defer closeBoth()
	buf := make([]byte, maxDatagram)
	for {
		p, err := readFrame(stream, buf)
		if err != nil {
			return
		}
		if _, err := udp.Write(p); err != nil && !isPortUnreachable(err) {
			return
		}
	}
}
