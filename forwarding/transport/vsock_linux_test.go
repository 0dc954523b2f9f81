package transport

import (
	"errors"
	"net"
	"sync"
	"testing"

	"github.com/mdlayher/vsock"
)

// fakeVsockListener hands out pipe conns that claim the given peer CIDs.
type fakeVsockListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func (l *fakeVsockListener) Accept() (net.Conn, error) {
	select {
	case <-l.done:
		return nil, net.ErrClosed
	default:
	}
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *fakeVsockListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *fakeVsockListener) Addr() net.Addr { return &vsock.Addr{ContextID: 3, Port: 1024} }

type vsockConn struct {
	net.Conn
	remote net.Addr
	closed chan struct{}
	once   sync.Once
}

func (c *vsockConn) RemoteAddr() net.Addr { return c.remote }

func (c *vsockConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

func TestVsockHostOnly(t *testing.T) {
	tests := []struct {
		name   string
		remote net.Addr
		accept bool
	}{
		{"host", &vsock.Addr{ContextID: vsock.Host, Port: 5000}, true},
		{"another VM", &vsock.Addr{ContextID: 3, Port: 5000}, false},
		{"hypervisor", &vsock.Addr{ContextID: vsock.Hypervisor, Port: 5000}, false},
		{"local", &vsock.Addr{ContextID: vsock.Local, Port: 5000}, false},
		{"not vsock", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fl := &fakeVsockListener{conns: make(chan net.Conn, 2), done: make(chan struct{})}
			v := newVsockListener(testLogger(t), func(port uint32) (net.Listener, error) {
				if port != PortControl {
					t.Errorf("listen on port %d", port)
				}
				return fl, nil
			})
			l, err := v.ListenPort(PortControl)
			if err != nil {
				t.Fatal(err)
			}
			a, _ := net.Pipe()
			c := &vsockConn{Conn: a, remote: tc.remote, closed: make(chan struct{})}
			fl.conns <- c
			// A host conn behind it, so Accept returns either way.
			h, _ := net.Pipe()
			host := &vsockConn{Conn: h, remote: &vsock.Addr{ContextID: vsock.Host, Port: 1}, closed: make(chan struct{})}
			fl.conns <- host

			got, err := l.Accept()
			if err != nil {
				t.Fatal(err)
			}
			if tc.accept {
				if got != c {
					t.Error("conn from the host was not accepted first")
				}
			} else {
				if got != host {
					t.Error("conn from a non-host peer was accepted")
				}
				select {
				case <-c.closed:
				default:
					t.Error("refused conn was not closed")
				}
			}
			v.Close()
			if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
				t.Errorf("Accept after Close: %v", err)
			}
			if _, err := v.ListenPort(PortDocker); err == nil {
				t.Error("ListenPort after Close succeeded")
			}
		})
	}
}
