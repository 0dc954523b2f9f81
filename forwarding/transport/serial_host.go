package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"
)

// SerialDialer is the host side of the serial transport (see serial.go). It
// keeps one chardev connection and one yamux session up in the background,
// redialing and resyncing whenever they drop, and opens a stream per
// DialPort.
type SerialDialer struct {
	dial func(ctx context.Context) (net.Conn, error)
	log  *slog.Logger
	t    serialTiming

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // run has returned

	mu       sync.Mutex
	closed   bool
	conn     net.Conn    // current chardev connection
	sess     *muxSession // current session; nil while none is up
	changed  chan struct{}
	sessions int // sessions established so far
}

var _ EarlyDialer = (*SerialDialer)(nil)

// NewSerialDialer starts keeping a session up over the connections that dial
// returns (typically a unix-socket dial to QEMU's chardev). It returns at
// once; DialPort and Ready wait for the session. Close stops it.
func NewSerialDialer(dial func(ctx context.Context) (net.Conn, error), log *slog.Logger) *SerialDialer {
	return newSerialDialer(dial, log, defaultSerialTiming())
}

func newSerialDialer(dial func(ctx context.Context) (net.Conn, error), log *slog.Logger, t serialTiming) *SerialDialer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &SerialDialer{
		dial:    dial,
		log:     log.With("transport", "serial", "side", "host"),
		t:       t,
		ctx:     ctx,
		cancel:  cancel,
		done:    make(chan struct{}),
		changed: make(chan struct{}),
	}
	go d.run()
	return d
}

// current returns the session (nil while none is up) and a channel closed
// when that changes.
func (d *SerialDialer) current() (*muxSession, <-chan struct{}, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, nil, fmt.Errorf("serial transport: %w", net.ErrClosed)
	}
	return d.sess, d.changed, nil
}

// publish installs ms (or nil) as the current session and wakes waiters.
func (d *SerialDialer) publish(ms *muxSession) {
	d.mu.Lock()
	d.sess = ms
	if ms != nil {
		d.sessions++
	}
	close(d.changed)
	d.changed = make(chan struct{})
	d.mu.Unlock()
}

// setConn records the chardev connection so Close can break it. It reports
// false when the dialer is already closed.
func (d *SerialDialer) setConn(c net.Conn) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed && c != nil {
		return false
	}
	d.conn = c
	return true
}

// Ready waits until a session with the guest is up.
func (d *SerialDialer) Ready(ctx context.Context) error {
	for {
		ms, changed, err := d.current()
		if err != nil {
			return err
		}
		if ms != nil && !ms.ys.IsClosed() {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("wait for the guest's serial session: %w", ctx.Err())
		}
	}
}

// DialPort opens a stream to a guest port. It waits, within ctx, for a
// session when none is up, and retries on the next session when the current
// one dies before the guest answered.
func (d *SerialDialer) DialPort(ctx context.Context, port uint32) (net.Conn, error) {
	return d.DialPortEarly(ctx, port, nil)
}

// DialPortEarly is DialPort with first sent right behind the stream's
// header, before the guest's answer: one round trip instead of two for a
// caller whose protocol speaks first (port forwarding's request).
func (d *SerialDialer) DialPortEarly(ctx context.Context, port uint32, first []byte) (net.Conn, error) {
	if port == 0 {
		return nil, errors.New("dial guest port 0: port 0 is reserved")
	}
	for {
		ms, changed, err := d.current()
		if err != nil {
			return nil, fmt.Errorf("dial guest port %d: %w", port, err)
		}
		if ms != nil && !ms.ys.IsClosed() {
			c, err := d.open(ctx, ms, port, first)
			if !errors.Is(err, ErrSessionLost) || ctx.Err() != nil {
				return c, err
			}
			d.log.Debug("session lost while dialing; retrying", "port", port)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, fmt.Errorf("dial guest port %d: waiting for the guest: %w", port, ctx.Err())
		}
	}
}

// open opens one stream on ms and does the port handshake, with first
// written along with the header.
func (d *SerialDialer) open(ctx context.Context, ms *muxSession, port uint32, first []byte) (net.Conn, error) {
	st, err := ms.ys.OpenStream()
	if err != nil {
		if ms.ys.IsClosed() {
			return nil, ErrSessionLost
		}
		return nil, fmt.Errorf("dial guest port %d: open stream: %w", port, err)
	}
	c := ms.wrap(st, serialAddr{side: "host"}, serialAddr{side: "guest", port: port})
	if dl, ok := ctx.Deadline(); ok {
		st.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { st.SetDeadline(time.Unix(1, 0)) })
	var status [1]byte
	_, err = writeFrames(st, append(streamHeader{port: port}.encode(), first...))
	if err == nil {
		_, err = io.ReadFull(st, status[:])
	}
	stopped := stop()
	st.SetDeadline(time.Time{})
	_, reset, _ := c.state()
	switch {
	case reset:
		c.abort()
		return nil, fmt.Errorf("dial guest port %d: the guest reset the stream", port)
	case !stopped || ctx.Err() != nil:
		c.abort()
		return nil, fmt.Errorf("dial guest port %d: %w", port, context.Cause(ctx))
	case errors.Is(err, yamux.ErrTimeout):
		c.abort()
		return nil, fmt.Errorf("dial guest port %d: %w", port, context.DeadlineExceeded)
	case err != nil && ms.ys.IsClosed():
		c.abort()
		return nil, ErrSessionLost
	case err != nil:
		c.abort()
		return nil, fmt.Errorf("dial guest port %d: %w", port, err)
	}
	switch status[0] {
	case statusOK:
		return c, nil
	case statusNoListener:
		c.Close()
		return nil, fmt.Errorf("guest port %d is %w (serial transport)", port, ErrNotListening)
	default:
		c.Close()
		return nil, fmt.Errorf("dial guest port %d: the guest refused the stream (status %d)", port, status[0])
	}
}

// Close stops the dialer. Open streams fail with ErrSessionLost; DialPort
// and Ready return net.ErrClosed.
func (d *SerialDialer) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	conn, ms := d.conn, d.sess
	d.mu.Unlock()

	d.cancel()
	if ms != nil {
		ms.ys.Close()
	}
	if conn != nil {
		conn.Close()
	}
	<-d.done
	d.publish(nil)
	return nil
}

// run keeps a session up until Close.
func (d *SerialDialer) run() {
	defer close(d.done)
	bo := backoff{min: d.t.retryMin, max: d.t.retryMax}
	for d.ctx.Err() == nil {
		conn, err := d.dial(d.ctx)
		if err != nil {
			if d.ctx.Err() != nil {
				return
			}
			d.log.Debug("dial the chardev", "err", err)
			sleepCtx(d.ctx, bo.next())
			continue
		}
		if !d.setConn(conn) {
			conn.Close()
			return
		}
		reason := d.session(conn)
		conn.Close()
		d.setConn(nil)
		if d.ctx.Err() != nil {
			return
		}
		if reason.established {
			bo.reset()
			d.log.Info("serial session ended; resyncing", "reason", reason.err)
			// Give the guest a moment to read EOF, so it need not rely on
			// the flush to notice the old session is gone.
			sleepCtx(d.ctx, d.t.redialPause)
		} else {
			d.log.Debug("serial handshake failed", "err", reason.err)
			sleepCtx(d.ctx, bo.next())
		}
	}
}

type sessionEnd struct {
	established bool
	err         error
}

// session runs the handshake and one yamux session on conn.
func (d *SerialDialer) session(conn net.Conn) sessionEnd {
	ac := &activityConn{Conn: conn}
	rest, err := hostHandshake(d.ctx, ac, d.t)
	if err != nil {
		return sessionEnd{err: err}
	}
	ys, err := yamux.Client(newPrefixedConn(rest, ac), muxConfig(d.t, d.log))
	if err != nil {
		return sessionEnd{err: fmt.Errorf("start yamux client: %w", err)}
	}
	ms := newMuxSession(ys, "host", d.log)
	d.publish(ms)
	d.log.Info("serial session up")
	go acceptNotices(ms, d.t)
	err = d.watch(ms, ac)
	d.publish(nil)
	ys.Close()
	return sessionEnd{established: true, err: err}
}

// watch blocks until the session ends and runs the liveness check: a ping
// after keepaliveInterval without a single byte read, and the end of the
// session only when still nothing arrived keepaliveTimeout after that ping.
func (d *SerialDialer) watch(ms *muxSession, ac *activityConn) error {
	timer := time.NewTimer(d.t.keepaliveInterval)
	defer timer.Stop()
	last := ac.reads.Load()
	pinged := false
	for {
		select {
		case <-ms.ys.CloseChan():
			return errors.New("yamux session closed")
		case <-d.ctx.Done():
			return d.ctx.Err()
		case <-timer.C:
		}
		now := ac.reads.Load()
		switch {
		case now != last:
			last, pinged = now, false
			timer.Reset(d.t.keepaliveInterval)
		case !pinged:
			pinged = true
			go ms.ys.Ping() // any byte counts as an answer, the pong included
			timer.Reset(d.t.keepaliveTimeout)
		default:
			return fmt.Errorf("guest silent for %v after a ping", d.t.keepaliveTimeout)
		}
	}
}

// acceptNotices serves the streams the guest opens to the host: reset
// notices only. (The guest's accept loop handles them among its streams.)
func acceptNotices(ms *muxSession, t serialTiming) {
	for {
		st, err := ms.ys.AcceptStream()
		if err != nil {
			return
		}
		go func() {
			defer st.Close()
			st.SetReadDeadline(time.Now().Add(t.headerTimeout))
			h, err := readStreamHeader(st)
			if err != nil || h.port != 0 {
				st.Write([]byte{statusBadHeader})
				return
			}
			ms.applyReset(h.resetID)
		}()
	}
}

// activityConn counts reads that returned data, for the liveness check.
type activityConn struct {
	net.Conn
	reads atomic.Uint64
}

func (c *activityConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.reads.Add(1)
	}
	return n, err
}

// hostHandshake runs the host's half of the resync on a fresh chardev
// connection and returns the bytes read past the guest's READY frame.
func hostHandshake(ctx context.Context, conn net.Conn, t serialTiming) ([]byte, error) {
	nonce := newNonce()
	ackSeen := make(chan struct{})
	quit := make(chan struct{})
	defer close(quit)
	wrote := make(chan error, 1)
	go func() {
		wrote <- writeSyncs(conn, nonce, t.syncInterval, ackSeen, quit)
	}()

	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()

	var sc frameScanner
	buf := make([]byte, 32<<10)
	acked := false
	for {
		n, err := conn.Read(buf)
		sc.feed(buf[:n])
		for {
			kind, got, ok := sc.next()
			if !ok {
				break
			}
			if got != nonce {
				continue
			}
			switch {
			case !acked && kind == frameAck:
				acked = true
				close(ackSeen)
				conn.SetReadDeadline(time.Now().Add(t.readyTimeout))
			case acked && kind == frameReady:
				rest := sc.rest()
				select {
				case werr := <-wrote:
					if werr != nil {
						return nil, fmt.Errorf("write handshake: %w", werr)
					}
				case <-ctx.Done():
					return nil, ctx.Err()
				}
				if !stop() {
					return nil, ctx.Err()
				}
				conn.SetReadDeadline(time.Time{})
				return rest, nil
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if acked && errors.Is(err, os.ErrDeadlineExceeded) {
				return nil, fmt.Errorf("no READY from the guest within %v", t.readyTimeout)
			}
			return nil, fmt.Errorf("read handshake: %w", err)
		}
	}
}

// writeSyncs writes the flush and then SYNC frames until ackSeen, then GO.
func writeSyncs(w io.Writer, nonce string, every time.Duration, ackSeen, quit <-chan struct{}) error {
	if _, err := w.Write(flushBytes()); err != nil {
		return err
	}
	sync := encodeFrame(frameSync, nonce)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ackSeen:
			_, err := w.Write(encodeFrame(frameGo, nonce))
			return err
		default:
		}
		if _, err := w.Write(sync); err != nil {
			return err
		}
		select {
		case <-ackSeen:
		case <-tick.C:
		case <-quit:
			return errors.New("handshake abandoned")
		}
	}
}
