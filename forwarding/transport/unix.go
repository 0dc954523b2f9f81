package transport

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// ErrNotListening reports that nothing listens on the guest port that was
// dialed. Callers may retry on it while the guest agent starts its services.
var ErrNotListening = errors.New("not listening")

// unixSocketName is the file a guest port listens on inside the directory.
func unixSocketName(dir string, port uint32) string {
	return filepath.Join(dir, fmt.Sprintf("%d.sock", port))
}

// unixDialer dials dir/<port>.sock.
type unixDialer struct {
	dir string
}

// NewUnixDialer returns a Dialer that reaches guest port N at dir/N.sock. It
// is the host side of native mode and of tests.
func NewUnixDialer(dir string) Dialer {
	return unixDialer{dir: dir}
}

// DialPort connects to dir/<port>.sock.
func (d unixDialer) DialPort(ctx context.Context, port uint32) (net.Conn, error) {
	path := unixSocketName(d.dir, port)
	var nd net.Dialer
	c, err := nd.DialContext(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("guest port %d is %w at %s (%v)", port, ErrNotListening, path, err)
		}
		return nil, fmt.Errorf("dial guest port %d at %s: %w", port, path, err)
	}
	setUnixBuffers(c)
	return c, nil
}

// UnixListener is the guest side of the unix transport: guest port N listens
// on dir/N.sock.
type UnixListener struct {
	dir string

	mu     sync.Mutex
	closed bool
	ports  map[uint32]*unixPortListener
}

var _ Listener = (*UnixListener)(nil)

// NewUnixListener returns a Listener that puts its sockets in dir, creating
// dir with mode 0700 when it does not exist.
func NewUnixListener(dir string) (*UnixListener, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create socket dir: %w", err)
	}
	return &UnixListener{dir: dir, ports: make(map[uint32]*unixPortListener)}, nil
}

// ListenPort listens on dir/<port>.sock with mode 0600. A socket file left
// behind by a dead process is removed; one that still accepts connections is
// an error.
func (u *UnixListener) ListenPort(port uint32) (net.Listener, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return nil, fmt.Errorf("listen on guest port %d: %w", port, net.ErrClosed)
	}
	if _, ok := u.ports[port]; ok {
		return nil, fmt.Errorf("listen on guest port %d: already listening", port)
	}
	path := unixSocketName(u.dir, port)
	if err := removeStaleSocket(path); err != nil {
		return nil, fmt.Errorf("listen on guest port %d: %w", port, err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on guest port %d: %w", port, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("listen on guest port %d: restrict socket mode: %w", port, err)
	}
	pl := &unixPortListener{Listener: l, release: func() { u.release(port) }}
	u.ports[port] = pl
	return pl, nil
}

// release forgets a port whose listener was closed.
func (u *UnixListener) release(port uint32) {
	u.mu.Lock()
	delete(u.ports, port)
	u.mu.Unlock()
}

// Close closes every port listener. Connections already accepted stay open.
func (u *UnixListener) Close() error {
	u.mu.Lock()
	u.closed = true
	ls := make([]*unixPortListener, 0, len(u.ports))
	for _, l := range u.ports {
		ls = append(ls, l)
	}
	u.mu.Unlock()
	var errs []error
	for _, l := range ls {
		if err := l.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// unixPortListener removes itself from its UnixListener on Close.
type unixPortListener struct {
	net.Listener
	once    sync.Once
	release func()
}

// unixBuffer is the send and receive buffer of a unix transport stream.
// The default (208 KiB on Linux) makes a streaming copy wait on its peer
// every few reads; with 1 MiB, and copyStream's large buffer, the two
// sides of a forward wake each other far less often (bench/forward, two
// processes here: 0.8-0.9 GiB/s before, 1.0-1.3 after). The kernel caps it at
// net.core.wmem_max and rmem_max. It is a limit, not an allocation.
const unixBuffer = 1 << 20

func (l *unixPortListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		setUnixBuffers(c)
	}
	return c, err
}

// setUnixBuffers gives a stream unixBuffer each way. It is best effort: a
// smaller buffer only costs speed.
func setUnixBuffers(c net.Conn) {
	if uc, ok := c.(*net.UnixConn); ok {
		uc.SetWriteBuffer(unixBuffer)
		uc.SetReadBuffer(unixBuffer)
	}
}

func (l *unixPortListener) Close() error {
	err := l.Listener.Close()
	l.once.Do(l.release)
	return err
}

// removeStaleSocket removes path when it is a socket nobody accepts on.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("check old socket: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("%s exists and is not a socket", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("%s is in use by another process", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale socket: %w", err)
	}
	return nil
}
