package transport

// The serial transport: yamux over one virtio-serial port.
//
// QEMU exposes the port to the host as a unix-socket chardev (server=on,
// wait=off) and to the guest as /dev/virtio-ports/berth.0. The host agent is
// the yamux client and the guest agent the yamux server. Both ends must
// survive the other going away: the host agent can be killed and restarted
// while the VM runs, and the guest can reboot or drop its session while the
// host stays connected.
//
// # Why a resync handshake
//
// The guest's port is not a socket. While no host is connected, read returns
// EOF at once and write blocks; when a host connects again, reads block for
// data. So the guest learns of a disconnect only if it reads while the host
// is away. A host agent that restarts quickly, or that drops its session and
// redials in the same process, can be back before the guest's reader runs.
// The guest then still holds the old yamux session, possibly in the middle of
// a frame, and old bytes may sit in buffers on both sides. Plain yamux would
// misparse them. Each side therefore discards bytes until the other proves,
// with a fresh random nonce, where the new session starts.
//
// # Handshake frames
//
// Every handshake frame is 22 printable ASCII bytes: "BERTH", a kind letter,
// and a 16-digit lowercase hex nonce. None of them holds a zero byte, and
// neither does the flush (flushLen bytes of 0xFF). Yamux requires version 0
// in the first byte of every frame header, so a yamux session that reads
// handshake bytes where it expects a header fails at once with a protocol
// error instead of misreading them. The flush is longer than the largest
// frame this package sends (maxFrameBody plus its header), so a session
// stuck inside a frame body reaches a header within the flush.
//
//	S  SYNC   host → guest  "a new host is here, with nonce N"
//	A  ACK    guest → host  "I saw SYNC N"
//	G  GO     host → guest  "yamux from me starts right after this frame"
//	R  READY  guest → host  "yamux from me starts right after this frame"
//	X  RESET  guest → host  "I dropped my session" (nonce unused)
//
// # Host, on every new chardev connection
//
//  1. Write the flush, then SYNC(N) every syncInterval, from one writer
//     goroutine, until ACK(N) is read. Everything read before ACK(N) is
//     discarded: old yamux bytes, RESET, ACKs for other nonces.
//  2. Stop the SYNC writer, write GO(N), discard until READY(N), and run the
//     yamux client on what follows.
//  3. When the session ends (socket EOF, yamux error, keepalive failure),
//     close the socket, pause briefly so the guest can read its EOF, redial
//     with backoff and start over.
//
// # Guest, on every session
//
//  1. Open the port; write the flush and RESET (a host still running yamux
//     fails on them and redials; a host in the handshake discards them).
//  2. Scan the incoming bytes for frames, discarding everything else. On EOF
//     the host is away: forget the nonce, sleep eofPollInterval, read again.
//     On SYNC(N) write ACK(N) (once per nonce, again after a second if the
//     host keeps asking). On GO(N) for the acked nonce write READY(N) and run
//     the yamux server on what follows.
//  3. When the session ends (EOF, yamux protocol error, close), close the
//     port: that also unblocks a write stuck on a vanished host. Every stream
//     of the session fails with an error, not EOF. Reopen and start over.
//     SerialListener.Close also writes the flush and RESET first (waiting at
//     most half a second), so a connected host resyncs without waiting for
//     the next boot or its liveness check.
//
// If the guest missed a disconnect, the new host's flush and SYNC frames hit
// its old yamux session as a protocol error within one frame, and step 3
// applies. The price is that up to one frame of flush bytes can be delivered
// as data to a stream of the dead session just before it fails.
//
// # Liveness
//
// Yamux's own keepalive is off: it kills a session whose pong is merely late,
// which happens on a busy TCG guest. The host runs its own: when nothing at
// all was read for keepaliveInterval it sends a ping, and it drops the
// session only when still nothing was read keepaliveTimeout after that ping.
// The guest needs no timer: it hears of a dead host through EOF, and of a new
// one through SYNC.
//
// # Streams
//
// Whoever opens a yamux stream starts it with a header: version byte (1),
// then the guest port as uint32 big-endian. The guest answers one status
// byte (statusOK, statusNoListener, statusBadHeader) before any data. Port 0
// is reserved for a reset notice: four more bytes name a stream ID of the
// session that the sender has closed while the peer kept sending. The peer
// then fails that stream's reads and writes with ECONNRESET, like a TCP
// reset. Either side may send a reset notice, so both accept streams.
//
// Half-close maps onto yamux's FIN: CloseWrite sends FIN and keeps reading.
// Close sends FIN too; if data still arrives afterwards, it sends the reset
// notice so the peer stops writing into the void.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/yamux"
)

// Names of the virtio-serial port, for the VM backend and the guest agent.
const (
	SerialPortName  = "berth.0"                   // virtserialport name=
	SerialGuestPath = "/dev/virtio-ports/berth.0" // where the guest finds it
)

// OpenSerialPort opens the guest's virtio-serial port for NewSerialListener,
// as in NewSerialListener(func() (io.ReadWriteCloser, error) { return
// OpenSerialPort(SerialGuestPath) }, log). On Linux the port is a pollable
// character device, so the runtime puts it in non-blocking mode and Close
// unblocks a pending Read or Write.
func OpenSerialPort(path string) (io.ReadWriteCloser, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open serial port: %w", err)
	}
	return f, nil
}

// Wire constants. Changing any of them breaks hosts and guests of other
// versions.
const (
	frameMagic    = "BERTH"
	nonceLen      = 16 // hex digits
	frameLen      = len(frameMagic) + 1 + nonceLen
	frameSync     = 'S'
	frameAck      = 'A'
	frameGo       = 'G'
	frameReady    = 'R'
	frameReset    = 'X'
	flushByte     = 0xFF
	maxFrameBody  = 64 << 10            // largest yamux data frame this package writes
	flushLen      = 2*maxFrameBody + 64 // more than one whole frame with its header
	streamVersion = 1

	statusOK         byte = 0
	statusNoListener byte = 1
	statusBadHeader  byte = 2
)

// serialTiming holds the protocol's timers. Tests shorten them.
type serialTiming struct {
	syncInterval      time.Duration // host: SYNC resend period
	readyTimeout      time.Duration // host: wait for READY after GO
	eofPollInterval   time.Duration // guest: sleep while reading EOF
	reackInterval     time.Duration // guest: re-ACK a nonce the host keeps sending
	retryMin          time.Duration // both: first backoff step for dial/open
	retryMax          time.Duration // both: backoff cap
	redialPause       time.Duration // host: pause after a session ends
	keepaliveInterval time.Duration // host: idle time before a ping
	keepaliveTimeout  time.Duration // host: silence after a ping that ends the session
	headerTimeout     time.Duration // both: time to read a stream header or status
	windowSize        uint32        // yamux MaxStreamWindowSize
}

func defaultSerialTiming() serialTiming {
	return serialTiming{
		syncInterval:      100 * time.Millisecond,
		readyTimeout:      10 * time.Second,
		eofPollInterval:   50 * time.Millisecond,
		reackInterval:     time.Second,
		retryMin:          50 * time.Millisecond,
		retryMax:          2 * time.Second,
		redialPause:       100 * time.Millisecond,
		keepaliveInterval: 15 * time.Second,
		keepaliveTimeout:  30 * time.Second,
		headerTimeout:     10 * time.Second,
		windowSize:        1 << 20,
	}
}

// newNonce returns a fresh random nonce as lowercase hex.
func newNonce() string {
	var b [nonceLen / 2]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// encodeFrame returns one handshake frame.
func encodeFrame(kind byte, nonce string) []byte {
	b := make([]byte, 0, frameLen)
	b = append(b, frameMagic...)
	b = append(b, kind)
	return append(b, nonce...)
}

// flushBytes returns the flush that precedes a side's first frame.
func flushBytes() []byte {
	return bytes.Repeat([]byte{flushByte}, flushLen)
}

// frameScanner finds handshake frames in a byte stream and skips the rest.
type frameScanner struct {
	buf []byte
}

// feed appends bytes read from the port.
func (s *frameScanner) feed(b []byte) {
	s.buf = append(s.buf, b...)
}

// reset drops everything buffered.
func (s *frameScanner) reset() {
	s.buf = s.buf[:0]
}

// next returns the next well-formed frame and consumes the bytes up to its
// end. When none is complete it returns ok false and keeps only a tail that
// may start one, so garbage never piles up.
func (s *frameScanner) next() (kind byte, nonce string, ok bool) {
	for {
		i := bytes.Index(s.buf, []byte(frameMagic))
		if i < 0 {
			keep := min(len(s.buf), len(frameMagic)-1)
			s.buf = append(s.buf[:0], s.buf[len(s.buf)-keep:]...)
			return 0, "", false
		}
		if len(s.buf)-i < frameLen {
			s.buf = append(s.buf[:0], s.buf[i:]...)
			return 0, "", false
		}
		f := s.buf[i : i+frameLen]
		kind = f[len(frameMagic)]
		nonce = string(f[len(frameMagic)+1:])
		if validKind(kind) && validNonce(nonce) {
			s.buf = append(s.buf[:0], s.buf[i+frameLen:]...)
			return kind, nonce, true
		}
		s.buf = append(s.buf[:0], s.buf[i+1:]...)
	}
}

// rest returns, and forgets, the bytes after the last frame returned.
func (s *frameScanner) rest() []byte {
	r := append([]byte(nil), s.buf...)
	s.buf = s.buf[:0]
	return r
}

func validKind(k byte) bool {
	switch k {
	case frameSync, frameAck, frameGo, frameReady, frameReset:
		return true
	}
	return false
}

func validNonce(n string) bool {
	if len(n) != nonceLen {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// streamHeader is what the opener of a yamux stream writes first.
type streamHeader struct {
	port    uint32 // 0: reset notice
	resetID uint32 // stream to reset, when port is 0
}

func (h streamHeader) encode() []byte {
	b := []byte{streamVersion, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], h.port)
	if h.port == 0 {
		b = binary.BigEndian.AppendUint32(b, h.resetID)
	}
	return b
}

// errBadHeader marks a stream header this version cannot serve.
var errBadHeader = errors.New("bad stream header")

// readStreamHeader reads a header written by encode.
func readStreamHeader(r io.Reader) (streamHeader, error) {
	var b [5]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return streamHeader{}, fmt.Errorf("read stream header: %w", err)
	}
	if b[0] != streamVersion {
		return streamHeader{}, fmt.Errorf("%w: version %d", errBadHeader, b[0])
	}
	h := streamHeader{port: binary.BigEndian.Uint32(b[1:])}
	if h.port == 0 {
		if _, err := io.ReadFull(r, b[:4]); err != nil {
			return streamHeader{}, fmt.Errorf("read reset notice: %w", err)
		}
		h.resetID = binary.BigEndian.Uint32(b[:4])
	}
	return h, nil
}

// muxConfig returns the yamux settings both sides use.
func muxConfig(t serialTiming, log *slog.Logger) *yamux.Config {
	c := yamux.DefaultConfig()
	// The host runs its own liveness check; see the comment at the top.
	c.EnableKeepAlive = false
	// A late ping reply or a slow frame on a starved TCG guest is not a dead
	// link: EOF and the host's liveness check find those. The write timeout
	// only keeps a stream write from waiting forever on a stuck session.
	c.ConnectionWriteTimeout = time.Minute
	// Half-closed streams may legitimately stay open for hours (docker
	// exec with stdin closed); resets are sent explicitly instead.
	c.StreamCloseTimeout = 0
	// An unanswered SYN must not tear the whole session down; callers bound
	// DialPort with their context.
	c.StreamOpenTimeout = 0
	c.MaxStreamWindowSize = t.windowSize
	c.LogOutput = nil
	c.Logger = yamuxLogger{log: log}
	return c
}

// yamuxLogger sends yamux's log lines to slog at debug level: during a
// resync its errors are expected, and this package logs the outcome itself.
type yamuxLogger struct {
	log *slog.Logger
}

func (l yamuxLogger) Print(v ...any) { l.emit(fmt.Sprint(v...)) }
func (l yamuxLogger) Printf(format string, v ...any) {
	l.emit(fmt.Sprintf(format, v...))
}
func (l yamuxLogger) Println(v ...any) { l.emit(fmt.Sprintln(v...)) }

func (l yamuxLogger) emit(msg string) {
	l.log.Debug(strings.TrimSpace(msg), "component", "yamux")
}

// prefixedConn replays bytes the handshake read past its last frame, then
// reads from the underlying port. Writes and Close go straight through.
type prefixedConn struct {
	r io.Reader
	io.WriteCloser
}

func newPrefixedConn(rest []byte, rwc io.ReadWriteCloser) *prefixedConn {
	return &prefixedConn{r: io.MultiReader(bytes.NewReader(rest), rwc), WriteCloser: rwc}
}

func (c *prefixedConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// sleepCtx waits d or until ctx is done, and reports whether ctx is still live.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// backoff doubles a retry delay up to a cap.
type backoff struct {
	min, max, cur time.Duration
}

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	return b.cur
}

func (b *backoff) reset() { b.cur = 0 }
