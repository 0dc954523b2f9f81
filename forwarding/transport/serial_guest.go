package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
)

// SerialListener is the guest side of the serial transport (see serial.go).
// It owns the virtio-serial port: it resyncs with whichever host connects,
// serves one yamux session at a time, and hands each stream to the
// net.Listener of its guest port.
type SerialListener struct {
	open func() (io.ReadWriteCloser, error)
	log  *slog.Logger
	t    serialTiming

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // run has returned

	mu       sync.Mutex
	closed   bool
	port     io.ReadWriteCloser // open port, for Close
	sess     *muxSession
	ports    map[uint32]*serialPortListener
	sessions int // sessions established so far
}

var _ Listener = (*SerialListener)(nil)

// NewSerialListener starts serving the port that open returns (typically
// OpenSerialPort(SerialGuestPath)). open is called again after every session
// ends, since the port is closed to unblock writes to a vanished host. It
// returns at once; ports can be listened on before any host connects.
func NewSerialListener(open func() (io.ReadWriteCloser, error), log *slog.Logger) *SerialListener {
	return newSerialListener(open, log, defaultSerialTiming())
}

func newSerialListener(open func() (io.ReadWriteCloser, error), log *slog.Logger, t serialTiming) *SerialListener {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &SerialListener{
		open:   open,
		log:    log.With("transport", "serial", "side", "guest"),
		t:      t,
		ctx:    ctx,
		cancel: cancel,
		done:   make(chan struct{}),
		ports:  make(map[uint32]*serialPortListener),
	}
	go l.run()
	return l
}

// ListenPort returns the listener for streams the host opens to port.
func (l *SerialListener) ListenPort(port uint32) (net.Listener, error) {
	if port == 0 {
		return nil, errors.New("listen on guest port 0: port 0 is reserved")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, fmt.Errorf("listen on guest port %d: %w", port, net.ErrClosed)
	}
	if _, ok := l.ports[port]; ok {
		return nil, fmt.Errorf("listen on guest port %d: already listening", port)
	}
	pl := &serialPortListener{
		addr:  serialAddr{side: "guest", port: port},
		conns: make(chan net.Conn),
		done:  make(chan struct{}),
	}
	pl.release = func() { l.release(port, pl) }
	l.ports[port] = pl
	return pl, nil
}

func (l *SerialListener) lookup(port uint32) *serialPortListener {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ports[port]
}

func (l *SerialListener) release(port uint32, pl *serialPortListener) {
	l.mu.Lock()
	if l.ports[port] == pl {
		delete(l.ports, port)
	}
	l.mu.Unlock()
}

// Close stops serving: the session and its streams end, port listeners
// return net.ErrClosed, and the port is closed.
func (l *SerialListener) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	port, ms := l.port, l.sess
	pls := make([]*serialPortListener, 0, len(l.ports))
	for _, pl := range l.ports {
		pls = append(pls, pl)
	}
	l.mu.Unlock()

	l.cancel()
	if ms != nil {
		// Tell a connected host now rather than at the next boot, but do
		// not wait long for one that is away (writes block then).
		sent := make(chan struct{})
		go func() {
			port.Write(resetBytes())
			close(sent)
		}()
		select {
		case <-sent:
		case <-time.After(500 * time.Millisecond):
		}
		ms.ys.Close()
	}
	if port != nil {
		port.Close()
	}
	<-l.done
	for _, pl := range pls {
		pl.Close()
	}
	return nil
}

// setPort records the open port so Close can break it; false when closed.
func (l *SerialListener) setPort(p io.ReadWriteCloser, ms *muxSession) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed && p != nil {
		return false
	}
	l.port, l.sess = p, ms
	if ms != nil {
		l.sessions++
	}
	return true
}

// run opens the port, resyncs and serves sessions until Close.
func (l *SerialListener) run() {
	defer close(l.done)
	bo := backoff{min: l.t.retryMin, max: l.t.retryMax}
	for l.ctx.Err() == nil {
		p, err := l.open()
		if err != nil {
			if bo.cur == 0 {
				l.log.Warn("open the serial port; retrying", "err", err)
			} else {
				l.log.Debug("open the serial port", "err", err)
			}
			sleepCtx(l.ctx, bo.next())
			continue
		}
		if !l.setPort(p, nil) {
			p.Close()
			return
		}
		err = l.session(p)
		p.Close()
		l.setPort(nil, nil)
		if l.ctx.Err() != nil {
			return
		}
		if err != nil {
			l.log.Debug("serial handshake failed", "err", err)
			sleepCtx(l.ctx, bo.next())
			continue
		}
		bo.reset()
	}
}

// session resyncs on p and serves one yamux session. It returns nil once an
// established session has ended.
func (l *SerialListener) session(p io.ReadWriteCloser) error {
	rest, err := guestHandshake(l.ctx, p, l.t)
	if err != nil {
		return err
	}
	// Writes go through a lock so that Close can put a RESET between two
	// yamux writes.
	lp := &lockedPort{rwc: p}
	ys, err := yamux.Server(newPrefixedConn(rest, lp), muxConfig(l.t, l.log))
	if err != nil {
		return fmt.Errorf("start yamux server: %w", err)
	}
	ms := newMuxSession(ys, "guest", l.log)
	if !l.setPort(lp, ms) {
		ys.Close()
		return nil
	}
	l.log.Info("serial session up")
	for {
		st, err := ys.AcceptStream()
		if err != nil {
			break
		}
		// Register before the next accept, so a reset notice that follows
		// this stream on the wire finds it.
		c := ms.wrap(st, serialAddr{side: "guest"}, serialAddr{side: "host"})
		go l.serveStream(ms, c)
	}
	ys.Close()
	l.log.Info("serial session ended; waiting for the host to resync")
	return nil
}

// serveStream reads a stream's header and hands the stream to its port's
// listener, or applies a reset notice.
func (l *SerialListener) serveStream(ms *muxSession, c *streamConn) {
	st := c.st
	st.SetReadDeadline(time.Now().Add(l.t.headerTimeout))
	h, err := readStreamHeader(st)
	if err != nil {
		if errors.Is(err, errBadHeader) {
			st.Write([]byte{statusBadHeader})
		}
		l.log.Debug("bad stream from the host", "err", err)
		c.abort()
		return
	}
	if h.port == 0 {
		ms.forget(st.StreamID())
		ms.applyReset(h.resetID)
		st.Close()
		return
	}
	st.SetReadDeadline(time.Time{})
	pl := l.lookup(h.port)
	if pl == nil {
		st.Write([]byte{statusNoListener})
		c.Close()
		return
	}
	c.local.port = h.port
	if _, err := st.Write([]byte{statusOK}); err != nil {
		c.abort()
		return
	}
	select {
	case pl.conns <- c:
	case <-pl.done:
		c.abort()
	case <-ms.ys.CloseChan():
		c.Close()
	}
}

// serialPortListener is the net.Listener of one guest port.
type serialPortListener struct {
	addr    serialAddr
	conns   chan net.Conn
	done    chan struct{}
	once    sync.Once
	release func()
}

func (pl *serialPortListener) Accept() (net.Conn, error) {
	select {
	case c := <-pl.conns:
		return c, nil
	case <-pl.done:
		return nil, &net.OpError{Op: "accept", Net: pl.addr.Network(), Addr: pl.addr, Err: net.ErrClosed}
	}
}

func (pl *serialPortListener) Close() error {
	pl.once.Do(func() {
		close(pl.done)
		pl.release()
	})
	return nil
}

func (pl *serialPortListener) Addr() net.Addr { return pl.addr }

// guestHandshake runs the guest's half of the resync on a freshly opened
// port and returns the bytes read past the host's GO frame.
func guestHandshake(ctx context.Context, p io.ReadWriter, t serialTiming) ([]byte, error) {
	w := newFrameWriter(p)
	defer w.stop()
	w.send(resetBytes())

	var (
		sc      frameScanner
		buf     = make([]byte, 32<<10)
		acked   string
		ackedAt time.Time
	)
	for {
		n, err := p.Read(buf)
		sc.feed(buf[:n])
		for {
			kind, nonce, ok := sc.next()
			if !ok {
				break
			}
			switch kind {
			case frameSync:
				if nonce != acked || time.Since(ackedAt) >= t.reackInterval {
					w.send(encodeFrame(frameAck, nonce))
					acked, ackedAt = nonce, time.Now()
				}
			case frameGo:
				if nonce != acked {
					continue
				}
				w.send(encodeFrame(frameReady, nonce))
				rest := sc.rest()
				if err := w.finish(ctx); err != nil {
					return nil, fmt.Errorf("write handshake: %w", err)
				}
				return rest, nil
			}
		}
		switch {
		case err == io.EOF:
			// No host connected. Whatever comes next is from a new one.
			acked = ""
			sc.reset()
			if !sleepCtx(ctx, t.eofPollInterval) {
				return nil, ctx.Err()
			}
		case err != nil:
			return nil, fmt.Errorf("read handshake: %w", err)
		}
	}
}

// frameWriter writes handshake frames in order from its own goroutine, so
// the reader never blocks on a port whose host is away.
type frameWriter struct {
	frames   chan []byte
	done     chan error
	stopOnce sync.Once
}

func newFrameWriter(w io.Writer) *frameWriter {
	fw := &frameWriter{frames: make(chan []byte, 64), done: make(chan error, 1)}
	go func() {
		for b := range fw.frames {
			if _, err := w.Write(b); err != nil {
				fw.done <- err
				for range fw.frames {
				}
				return
			}
		}
		fw.done <- nil
	}()
	return fw
}

// send queues b; it drops b rather than block when the queue is full, which
// only happens when the host has not read for a long time.
func (fw *frameWriter) send(b []byte) {
	select {
	case fw.frames <- b:
	default:
	}
}

// stop lets the goroutine end once its queue is written or the port closed.
func (fw *frameWriter) stop() {
	fw.stopOnce.Do(func() { close(fw.frames) })
}

// finish waits until everything queued is written.
func (fw *frameWriter) finish(ctx context.Context) error {
	fw.stop()
	select {
	case err := <-fw.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// resetBytes is the flush and RESET frame that the guest sends when it
// drops a session (see serial.go).
func resetBytes() []byte {
	return append(flushBytes(), encodeFrame(frameReset, strings.Repeat("0", nonceLen))...)
}

// lockedPort serializes writes to the port.
type lockedPort struct {
	mu  sync.Mutex
	rwc io.ReadWriteCloser
}

func (p *lockedPort) Read(b []byte) (int, error) { return p.rwc.Read(b) }

func (p *lockedPort) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rwc.Write(b)
}

func (p *lockedPort) Close() error { return p.rwc.Close() }
