package transport

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"github.com/mdlayher/vsock"
)

// VsockListener is the guest side of the vsock transport: guest port N is
// AF_VSOCK port N, and only the host (CID 2) may connect. The host side
// belongs to the VM backend (vz's VirtioSocketDevice, hvsock).
type VsockListener struct {
	log    *slog.Logger
	listen func(port uint32) (net.Listener, error)

	mu     sync.Mutex
	closed bool
	ports  map[uint32]net.Listener
}

var _ Listener = (*VsockListener)(nil)

// NewVsockListener returns a Listener on AF_VSOCK ports.
func NewVsockListener(log *slog.Logger) *VsockListener {
	return newVsockListener(log, func(port uint32) (net.Listener, error) {
		return vsock.Listen(port, nil)
	})
}

func newVsockListener(log *slog.Logger, listen func(port uint32) (net.Listener, error)) *VsockListener {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &VsockListener{
		log:    log.With("transport", "vsock"),
		listen: listen,
		ports:  make(map[uint32]net.Listener),
	}
}

// ListenPort listens on vsock port and accepts only connections from the
// host's CID; others are closed and logged.
func (v *VsockListener) ListenPort(port uint32) (net.Listener, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return nil, fmt.Errorf("listen on vsock port %d: %w", port, net.ErrClosed)
	}
	if _, ok := v.ports[port]; ok {
		return nil, fmt.Errorf("listen on vsock port %d: already listening", port)
	}
	l, err := v.listen(port)
	if err != nil {
		return nil, fmt.Errorf("listen on vsock port %d: %w", port, err)
	}
	hl := &hostOnlyListener{Listener: l, log: v.log.With("port", port)}
	hl.release = func() { v.release(port, hl) }
	v.ports[port] = hl
	return hl, nil
}

func (v *VsockListener) release(port uint32, l net.Listener) {
	v.mu.Lock()
	if v.ports[port] == l {
		delete(v.ports, port)
	}
	v.mu.Unlock()
}

// Close closes every port listener. Accepted connections stay open.
func (v *VsockListener) Close() error {
	v.mu.Lock()
	v.closed = true
	ls := make([]net.Listener, 0, len(v.ports))
	for _, l := range v.ports {
		ls = append(ls, l)
	}
	v.mu.Unlock()
	var errs []error
	for _, l := range ls {
		if err := l.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// hostOnlyListener drops connections whose peer is not the host.
type hostOnlyListener struct {
	net.Listener
	log     *slog.Logger
	once    sync.Once
	release func()
}

func (l *hostOnlyListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if a, ok := c.RemoteAddr().(*vsock.Addr); ok && a.ContextID == vsock.Host {
			return c, nil
		}
		l.log.Warn("refused a vsock connection that is not from the host", "peer", c.RemoteAddr())
		c.Close()
	}
}

func (l *hostOnlyListener) Close() error {
	err := l.Listener.Close()
	l.once.Do(l.release)
	return err
}
