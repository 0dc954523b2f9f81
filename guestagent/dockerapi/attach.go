package dockerapi

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/moby/moby/api/types"
	"github.com/moby/moby/api/types/common"
	"github.com/moby/moby/api/types/container"

	"github.com/berthvm/berth/guestagent/engine"
)

// Stream numbers of dockerd's multiplexed framing.
const (
	streamStdout byte = 1
	streamStderr byte = 2
)

// maxFrame bounds one multiplexed frame; longer writes are split.
const maxFrame = 1 << 20

// sink is the output side of attach, exec and logs: one lock so frames of
// stdout and stderr never interleave, a start hook that sends the
// response header before the first byte, and a flush after each write so
// output reaches the terminal as it is produced.
type sink struct {
	mu      sync.Mutex
	w       io.Writer
	start   func() error // sends the header; nil: none
	flush   func() error // nil: none
	started bool
	err     error // sticky write error
}

// begin sends the header now if it was not sent yet.
func (s *sink) begin() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.beginLocked()
}

func (s *sink) beginLocked() error {
	if s.started || s.err != nil {
		return s.err
	}
	s.started = true
	if s.start != nil {
		if err := s.start(); err != nil {
			s.err = err
			return err
		}
	}
	if s.flush != nil {
		if err := s.flush(); err != nil {
			s.err = err
		}
	}
	return s.err
}

// isStarted reports whether the header went out.
func (s *sink) isStarted() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.started
}

// write sends p raw, or as multiplexed frames of stream.
func (s *sink) write(stream byte, framed bool, p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.beginLocked(); err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	var out []byte
	if framed {
		out = make([]byte, 0, len(p)+8*(1+len(p)/maxFrame))
		for rest := p; len(rest) > 0; {
			n := min(len(rest), maxFrame)
			var hdr [8]byte
			hdr[0] = stream
			binary.BigEndian.PutUint32(hdr[4:], uint32(n))
			out = append(append(out, hdr[:]...), rest[:n]...)
			rest = rest[n:]
		}
	} else {
		out = p
	}
	if _, err := s.w.Write(out); err != nil {
		s.err = err
		return 0, err
	}
	if s.flush != nil {
		if err := s.flush(); err != nil {
			s.err = err
			return 0, err
		}
	}
	return len(p), nil
}

// streamWriter is one stream of a sink.
type streamWriter struct {
	s      *sink
	stream byte
	framed bool
}

func (w streamWriter) Write(p []byte) (int, error) { return w.s.write(w.stream, w.framed, p) }

// streamType is the Content-Type of attach, exec and logs output: API
// 1.42 and later tell multiplexed from raw; before, it is always "raw".
func streamType(r *http.Request, multiplexed bool) string {
	if multiplexed && !before(r, "1.42") {
		return types.MediaTypeMultiplexedStream
	}
	return types.MediaTypeRawStream
}

// hijack is a connection taken over for attach or exec start. The status
// line is sent lazily (by out's start hook): an engine error before any
// output is still a plain HTTP error, as dockerd answers it before it
// hijacks.
type hijack struct {
	s       *Server
	r       *http.Request
	conn    net.Conn
	in      io.Reader
	out     *sink
	upgrade bool
	ctype   string
	hdr     http.Header
}

func (s *Server) hijack(w http.ResponseWriter, r *http.Request, ctype string) (*hijack, error) {
	hdr := w.Header().Clone()
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, fmt.Errorf("hijacking the connection: %w", err)
	}
	// The server's header deadline no longer applies: attach and exec
	// sessions last as long as the process.
	_ = conn.SetDeadline(time.Time{})
	// Input is read from the connection itself, after what the server
	// had buffered: reading through the server's reader would cancel the
	// request's context at the client's half-close.
	buffered, _ := rw.Reader.Peek(rw.Reader.Buffered())
	in := io.MultiReader(bytes.NewReader(bytes.Clone(buffered)), conn)
	h := &hijack{s: s, r: r, conn: conn, in: in, upgrade: r.Header.Get("Upgrade") != "", ctype: ctype, hdr: hdr}
	h.out = &sink{w: conn, start: h.writeHeader}
	return h, nil
}

// writeHeader sends "101 UPGRADED" when the client asked to upgrade
// (the docker CLI does), else 200 with the body running to the close.
func (h *hijack) writeHeader() error {
	var b bytes.Buffer
	if h.upgrade {
		fmt.Fprintf(&b, "HTTP/1.1 101 UPGRADED\r\nContent-Type: %s\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n", h.ctype)
	} else {
		fmt.Fprintf(&b, "HTTP/1.1 200 OK\r\nContent-Type: %s\r\n", h.ctype)
	}
	for k, vs := range h.hdr {
		if k == "Content-Type" || k == "Content-Length" {
			continue
		}
		for _, v := range vs {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	b.WriteString("\r\n")
	_, err := h.conn.Write(b.Bytes())
	return err
}

// writer returns the sink for one stream.
func (h *hijack) writer(stream byte, framed bool) io.Writer {
	return streamWriter{s: h.out, stream: stream, framed: framed}
}

// finish ends the session: an error before any output becomes an HTTP
// error response; afterwards it can only be logged. The connection is
// closed either way.
func (h *hijack) finish(err error) {
	defer h.conn.Close()
	h.out.mu.Lock()
	started := h.out.started
	if !started && err != nil {
		h.out.started = true
	}
	h.out.mu.Unlock()
	switch {
	case err != nil && !started:
		h.writeErrorResponse(err)
	case !started:
		_ = h.out.begin()
	case err != nil:
		h.s.log.Debug("docker api stream ended with an error", "path", h.r.URL.Path, "err", err)
	}
}

func (h *hijack) writeErrorResponse(err error) {
	code := statusOf(err)
	if code >= 500 {
		h.s.log.Warn("docker api request failed", "method", h.r.Method, "path", h.r.URL.Path, "status", code, "err", err)
	}
	body, _ := json.Marshal(common.ErrorResponse{Message: err.Error()})
	body = append(body, '\n')
	var b bytes.Buffer
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n", code, http.StatusText(code), len(body))
	for _, k := range []string{"Server", "Api-Version"} {
		if v := h.hdr.Get(k); v != "" {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	b.WriteString("\r\n")
	b.Write(body)
	_, _ = h.conn.Write(b.Bytes())
}

// errDetached is what stdin reads return once the client detached (its
// detach keys, or the end of its input where that does not close the
// process's stdin): the engine must leave the process's stdin open.
var errDetached = errors.New("detached from the container")

// stdinReader is the client's input on a hijacked connection, as dockerd
// treats it. With detach keys (given for a tty only) a partial match is
// held back and a full match ends the session (end is called, then reads
// fail with errDetached). At the client's end of input, passEOF hands
// io.EOF to the engine, which closes the process's stdin; otherwise the
// session ends and the process's stdin stays open.
type stdinReader struct {
	conn    net.Conn
	src     io.Reader
	keys    []byte
	passEOF bool
	end     func()

	buf  []byte
	held []byte // a prefix of keys read but not delivered
	out  []byte // bytes ready for Read
	err  error  // returned once out is drained
}

func newStdinReader(conn net.Conn, src io.Reader, keys []byte, passEOF bool, end func()) *stdinReader {
	return &stdinReader{conn: conn, src: src, keys: keys, passEOF: passEOF, end: end, buf: make([]byte, 32<<10)}
}

func (r *stdinReader) Read(p []byte) (int, error) {
	for len(r.out) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		n, err := r.src.Read(r.buf)
		r.scan(r.buf[:n])
		if err != nil && r.err == nil {
			switch {
			case errors.Is(err, io.EOF) && r.passEOF:
				r.out = append(r.out, r.held...)
				r.held = nil
				r.err = io.EOF
			case errors.Is(err, io.EOF):
				r.out = append(r.out, r.held...)
				r.held = nil
				r.end()
				r.err = errDetached
			default:
				r.err = err
			}
		}
	}
	n := copy(p, r.out)
	r.out = r.out[n:]
	return n, nil
}

// scan moves data to out, holding back what may begin the detach keys.
func (r *stdinReader) scan(data []byte) {
	if len(r.keys) == 0 {
		r.out = append(r.out, data...)
		return
	}
	for _, b := range data {
		r.held = append(r.held, b)
		for len(r.held) > 0 && !bytes.HasPrefix(r.keys, r.held) {
			r.out = append(r.out, r.held[0])
			r.held = r.held[1:]
		}
		if len(r.held) == len(r.keys) {
			r.held = nil
			r.end()
			r.err = errDetached
			return // what follows the keys is dropped with the session
		}
	}
}

// Close unblocks a pending Read: the engine calls it when it is done
// with stdin. The connection itself is closed by the handler.
func (r *stdinReader) Close() error {
	return r.conn.SetReadDeadline(time.Now())
}

// defaultDetachKeys are ctrl-p, ctrl-q.
var defaultDetachKeys = []byte{16, 17}

// execDetachKeys reads ExecInspectResponse.DetachKeys: dockerd gives the
// key bytes; an engine may keep the request's text ("ctrl-x,y"), which is
// read in Docker's format when it parses as such (a sequence of raw bytes
// never does, but for one key, where both readings agree).
func execDetachKeys(b []byte) []byte {
	if len(b) == 0 {
		return defaultDetachKeys
	}
	if keys, err := engine.ParseDetachKeys(string(b)); err == nil {
		return keys
	}
	return b
}

// session is what attach and exec start share: streams on a hijacked
// connection, and a context that detaching cancels.
type session struct {
	h      *hijack
	ctx    context.Context
	cancel context.CancelFunc
	framed bool
}

func (s *Server) newSession(w http.ResponseWriter, r *http.Request, tty bool) (*session, error) {
	h, err := s.hijack(w, r, streamType(r, !tty))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(r.Context())
	return &session{h: h, ctx: ctx, cancel: cancel, framed: !tty}, nil
}

// stdin returns the client's input; keys are honoured only with a tty,
// as in dockerd (binary input must pass untouched).
func (ss *session) stdin(tty bool, keys []byte, passEOF bool) io.ReadCloser {
	if !tty {
		keys = nil
	}
	return newStdinReader(ss.h.conn, ss.h.in, keys, passEOF, ss.cancel)
}

func (ss *session) stdout() io.Writer { return ss.h.writer(streamStdout, ss.framed) }
func (ss *session) stderr() io.Writer { return ss.h.writer(streamStderr, ss.framed) }

// detached reports whether the session ended from the client's side.
func (ss *session) detached() bool { return ss.ctx.Err() != nil }

func (ss *session) finish(err error) {
	if err != nil && ss.detached() && (errors.Is(err, context.Canceled) || errors.Is(err, errDetached)) {
		err = nil
	}
	ss.h.finish(err)
	ss.cancel()
}

// containerAttach serves POST /containers/{id}/attach (docker attach,
// docker run, docker start -a).
func (s *Server) containerAttach(w http.ResponseWriter, r *http.Request, c engine.Containers) {
	id := r.PathValue("id")
	q, err := parseQuery(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	keys, err := engine.ParseDetachKeys(q.get("detachKeys"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	info, err := containerStreams(r.Context(), c, id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ss, err := s.newSession(w, r, info.tty)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	opts := engine.AttachOptions{
		Logs:      q.bool("logs"),
		Stream:    q.bool("stream"),
		StdinOnce: info.stdinOnce,
		OnAttached: func() {
			_ = ss.h.out.begin()
		},
	}
	if q.bool("stdin") && info.openStdin {
		// Without a tty and with StdinOnce the client's end of input
		// closes the container's stdin; otherwise it only detaches.
		opts.Stdin = ss.stdin(info.tty, keys, info.stdinOnce && !info.tty)
	}
	if q.bool("stdout") {
		opts.Stdout = ss.stdout()
	}
	if q.bool("stderr") && !info.tty {
		opts.Stderr = ss.stderr()
	}
	ss.finish(noSuch("container", id, c.Attach(ss.ctx, id, opts)))
}

// execCreate serves POST /containers/{id}/exec.
func (s *Server) execCreate(w http.ResponseWriter, r *http.Request, c engine.Containers) {
	id := r.PathValue("id")
	body, err := readBody(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	req, err := decodeExecCreate(body)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	execID, err := c.ExecCreate(r.Context(), id, req)
	if err != nil {
		s.writeError(w, r, noSuch("container", id, err))
		return
	}
	writeJSON(w, http.StatusCreated, container.ExecCreateResponse{ID: execID})
}

// decodeExecCreate reads and checks an exec create body.
func decodeExecCreate(body []byte) (container.ExecCreateRequest, error) {
	var req container.ExecCreateRequest
	if err := decodeJSONBytes(body, &req, false); err != nil {
		return req, err
	}
	if len(req.Cmd) == 0 {
		return req, invalidf("No exec command specified")
	}
	if req.DetachKeys != "" {
		if _, err := engine.ParseDetachKeys(req.DetachKeys); err != nil {
			return req, err
		}
	}
	if req.ConsoleSize != nil && !req.Tty {
		return req, invalidf("console size is only supported when TTY is enabled")
	}
	return req, nil
}

// execStart serves POST /exec/{id}/start: detached, it answers once the
// process runs; otherwise it hijacks the connection as attach does.
func (s *Server) execStart(w http.ResponseWriter, r *http.Request, c engine.Containers) {
	id := r.PathValue("id")
	var req container.ExecStartRequest
	if err := decodeJSON(r.Body, &req, true); err != nil {
		s.writeError(w, r, err)
		return
	}
	if req.ConsoleSize != nil && !req.Tty && !before(r, "1.42") {
		s.writeError(w, r, invalidf("console size is only supported when TTY is enabled"))
		return
	}
	insp, err := c.ExecInspect(r.Context(), id)
	if err != nil {
		s.writeError(w, r, noSuch("exec instance", id, err))
		return
	}
	if req.Detach {
		err := c.ExecStart(r.Context(), id, engine.ExecStartOptions{Detach: true, Tty: req.Tty, ConsoleSize: req.ConsoleSize})
		if err != nil {
			s.writeError(w, r, noSuch("exec instance", id, err))
			return
		}
		w.WriteHeader(http.StatusOK)
		return
	}
	keys := execDetachKeys(insp.DetachKeys)
	// The framing follows the request's Tty, as in dockerd; the docker
	// CLI sends the exec's own.
	ss, err := s.newSession(w, r, req.Tty)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	opts := engine.ExecStartOptions{
		Tty:         req.Tty,
		ConsoleSize: req.ConsoleSize,
		OnStarted: func() {
			_ = ss.h.out.begin()
		},
	}
	if insp.OpenStdin {
		// An exec's stdin is closed at the client's end of input
		// unless it has a tty.
		opts.Stdin = ss.stdin(req.Tty, keys, !req.Tty)
	}
	if insp.OpenStdout {
		opts.Stdout = ss.stdout()
	}
	if insp.OpenStderr && !req.Tty {
		opts.Stderr = ss.stderr()
	}
	err = c.ExecStart(ss.ctx, id, opts)
	if err != nil && statusOf(err) >= 500 && !ss.detached() && !ss.h.out.isStarted() {
		// The process could not start (no such executable, ...):
		// dockerd reports that on the stream, and the exit code through
		// exec inspect.
		_, _ = ss.stdout().Write([]byte(err.Error() + "\r\n"))
		err = nil
	}
	ss.finish(noSuch("exec instance", id, err))
}

func (s *Server) execResize(w http.ResponseWriter, r *http.Request, c engine.Containers) {
	id := r.PathValue("id")
	height, width, err := sizeParams(r)
	if err == nil {
		err = c.ExecResize(r.Context(), id, height, width)
	}
	if err != nil {
		s.writeError(w, r, noSuch("exec instance", id, err))
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (s *Server) execInspect(w http.ResponseWriter, r *http.Request, c engine.Containers) {
	id := r.PathValue("id")
	insp, err := c.ExecInspect(r.Context(), id)
	if err != nil {
		s.writeError(w, r, noSuch("exec instance", id, err))
		return
	}
	writeJSON(w, http.StatusOK, insp)
}
