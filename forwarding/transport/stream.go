package transport

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/yamux"
)

// ErrSessionLost is the error a serial stream returns when the session under
// it ended (host agent gone, guest reset) before the stream did. It wraps
// io.ErrUnexpectedEOF: the peer never closed the stream.
var ErrSessionLost = fmt.Errorf("serial transport session lost: %w", io.ErrUnexpectedEOF)

// serialAddr names one end of a serial stream.
type serialAddr struct {
	side string // "host" or "guest"
	port uint32 // guest port; 0 on the host end
}

func (a serialAddr) Network() string { return "berth-serial" }

func (a serialAddr) String() string {
	if a.port == 0 {
		return a.side
	}
	return fmt.Sprintf("%s:%d", a.side, a.port)
}

// muxSession is one yamux session with the streams that may receive a reset
// notice.
type muxSession struct {
	ys   *yamux.Session
	side string // "host" or "guest"
	log  *slog.Logger

	mu      sync.Mutex
	streams map[uint32]*streamConn
}

func newMuxSession(ys *yamux.Session, side string, log *slog.Logger) *muxSession {
	return &muxSession{ys: ys, side: side, log: log, streams: make(map[uint32]*streamConn)}
}

// wrap makes st a streamConn of this session and registers it for resets.
func (m *muxSession) wrap(st *yamux.Stream, local, remote serialAddr) *streamConn {
	c := &streamConn{st: st, ms: m, local: local, remote: remote}
	m.mu.Lock()
	m.streams[st.StreamID()] = c
	m.mu.Unlock()
	return c
}

func (m *muxSession) forget(id uint32) {
	m.mu.Lock()
	delete(m.streams, id)
	m.mu.Unlock()
}

// sendReset tells the peer that stream id is closed here and that it should
// stop writing to it.
func (m *muxSession) sendReset(id uint32) {
	go func() {
		st, err := m.ys.OpenStream()
		if err != nil {
			return
		}
		defer st.Close()
		st.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := st.Write(streamHeader{resetID: id}.encode()); err != nil {
			m.log.Debug("send stream reset", "stream", id, "err", err)
		}
	}()
}

// applyReset fails stream id after the peer sent a reset notice for it.
func (m *muxSession) applyReset(id uint32) {
	m.mu.Lock()
	c := m.streams[id]
	m.mu.Unlock()
	if c != nil {
		c.resetByPeer()
	}
}

// streamConn is a yamux stream as a net.Conn with TCP-like endings:
// CloseWrite is a half-close, Close a full close that resets the peer if it
// keeps sending, a reset from the peer fails reads and writes with
// ECONNRESET, and the end of the session fails them with ErrSessionLost.
type streamConn struct {
	st            *yamux.Stream
	ms            *muxSession
	local, remote serialAddr

	rmu sync.Mutex // one reader at a time, so Close can take the read side over

	mu      sync.Mutex
	closed  bool // Close was called
	reset   bool // the peer reset the stream
	wclosed bool // CloseWrite was called
	sawEOF  bool // the peer's FIN was read
}

var _ net.Conn = (*streamConn)(nil)

func (c *streamConn) state() (closed, reset, wclosed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed, c.reset, c.wclosed
}

func (c *streamConn) opErr(op string, err error) error {
	return &net.OpError{Op: op, Net: c.local.Network(), Source: c.local, Addr: c.remote, Err: err}
}

// mapErr turns a yamux error into what a net.Conn user expects.
func (c *streamConn) mapErr(op string, err error) error {
	closed, reset, wclosed := c.state()
	switch {
	case closed:
		return c.opErr(op, net.ErrClosed)
	case reset || errors.Is(err, yamux.ErrConnectionReset):
		return c.opErr(op, syscall.ECONNRESET)
	case errors.Is(err, yamux.ErrTimeout):
		return c.opErr(op, os.ErrDeadlineExceeded)
	case errors.Is(err, yamux.ErrSessionShutdown), c.ms.ys.IsClosed():
		return c.opErr(op, ErrSessionLost)
	case op == "write" && wclosed && errors.Is(err, yamux.ErrStreamClosed):
		return c.opErr(op, syscall.EPIPE)
	}
	return c.opErr(op, err)
}

func (c *streamConn) Read(b []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if closed, reset, _ := c.state(); closed || reset {
		return 0, c.mapErr("read", nil)
	}
	n, err := c.st.Read(b)
	if err == nil {
		return n, nil
	}
	if err == io.EOF {
		// yamux also reports EOF on every stream when the session dies.
		closed, reset, _ := c.state()
		if !closed && !reset && !c.ms.ys.IsClosed() {
			c.mu.Lock()
			c.sawEOF = true
			c.mu.Unlock()
			return n, io.EOF
		}
	}
	return n, c.mapErr("read", err)
}

func (c *streamConn) Write(b []byte) (int, error) {
	if closed, reset, _ := c.state(); closed || reset {
		return 0, c.mapErr("write", nil)
	}
	n, err := writeFrames(c.st, b)
	if err != nil {
		return n, c.mapErr("write", err)
	}
	return n, nil
}

// writeFrames writes b to a yamux stream in data frames of at most
// maxFrameBody: small frames bound how far a resync must flush (see
// serial.go).
func writeFrames(st *yamux.Stream, b []byte) (int, error) {
	total := 0
	for total < len(b) {
		end := min(len(b), total+maxFrameBody)
		n, err := st.Write(b[total:end])
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// CloseWrite sends FIN: the peer reads EOF, and this end can still read.
func (c *streamConn) CloseWrite() error {
	c.mu.Lock()
	c.wclosed = true
	c.mu.Unlock()
	if err := c.st.Close(); err != nil {
		return c.opErr("close", err)
	}
	return nil
}

// Close ends both directions. Pending reads and writes return net.ErrClosed.
// If the peer sends more data after this, it gets a reset notice.
func (c *streamConn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	done := c.sawEOF || c.reset
	c.mu.Unlock()

	c.st.Close() // FIN; wakes writers blocked on the window
	if done || c.ms.ys.IsClosed() {
		c.ms.forget(c.st.StreamID())
		return nil
	}
	// Kick a blocked reader out, then watch for data the peer still sends.
	c.st.SetReadDeadline(time.Unix(1, 0))
	go c.drainAfterClose()
	return nil
}

// abort closes the stream and resets the peer at once, for streams that
// fail before their users ever see them.
func (c *streamConn) abort() {
	c.mu.Lock()
	already := c.closed
	c.closed = true
	c.mu.Unlock()
	if already {
		return
	}
	c.st.Close()
	c.st.SetReadDeadline(time.Unix(1, 0))
	c.ms.forget(c.st.StreamID())
	if !c.ms.ys.IsClosed() {
		c.ms.sendReset(c.st.StreamID())
	}
}

// finWaitTimeout bounds how long a closed stream waits for the peer's FIN,
// like TCP's FIN_WAIT_2 timeout, before it resets the peer.
const finWaitTimeout = 2 * time.Minute

// drainAfterClose waits for the peer's FIN after Close. Data arriving instead
// means the peer still writes to a stream nobody reads: reset it. So does a
// peer that neither writes nor closes for finWaitTimeout.
func (c *streamConn) drainAfterClose() {
	c.rmu.Lock() // the kicked reader, if any, has returned
	defer c.rmu.Unlock()
	defer c.ms.forget(c.st.StreamID())
	c.st.SetReadDeadline(time.Now().Add(finWaitTimeout))
	var b [1]byte
	n, err := c.st.Read(b[:])
	if n > 0 || errors.Is(err, yamux.ErrTimeout) {
		c.ms.sendReset(c.st.StreamID())
	}
}

// resetByPeer fails the stream after the peer's reset notice.
func (c *streamConn) resetByPeer() {
	c.mu.Lock()
	if c.closed || c.reset {
		c.mu.Unlock()
		return
	}
	c.reset = true
	c.mu.Unlock()
	c.st.Close()                          // our FIN lets yamux free the stream on both sides
	c.st.SetReadDeadline(time.Unix(1, 0)) // wake blocked readers; they report the reset
	c.ms.forget(c.st.StreamID())
}

func (c *streamConn) LocalAddr() net.Addr  { return c.local }
func (c *streamConn) RemoteAddr() net.Addr { return c.remote }

// Deadlines on a closed or reset stream are ignored: Close and the reset
// use the read deadline themselves.

func (c *streamConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// SetReadDeadline holds mu while it checks and sets, so that a deadline
// set by another goroutine (copyStream's, say) as the stream closes lands
// before Close's or not at all: one landing after it would cut short, or
// lift, the wait for the peer's FIN.
func (c *streamConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.reset {
		return nil
	}
	if testHookSetReadDeadline != nil {
		testHookSetReadDeadline()
	}
	return c.st.SetReadDeadline(t)
}

// testHookSetReadDeadline, when set, runs in SetReadDeadline between the
// check and the set. Tests use it to hold a deadline there.
var testHookSetReadDeadline func()

func (c *streamConn) SetWriteDeadline(t time.Time) error {
	return c.st.SetWriteDeadline(t)
}
