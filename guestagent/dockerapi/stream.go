package dockerapi

import (
	"encoding/json"
	"net/http"
	"sync"

	"github.com/moby/moby/api/types/jsonstream"
)

// stream writes a streamed response (JSON progress lines, a tar, event
// lines), flushing each write so the CLI draws progress as it happens.
// Headers go out with the first write, so an error before any output is
// still a plain status-coded error, and one after is a stream error line,
// as dockerd does.
type stream struct {
	s       *Server
	w       http.ResponseWriter
	r       *http.Request
	rc      *http.ResponseController
	ctype   string
	mu      sync.Mutex
	started bool
	enc     *json.Encoder
}

func (s *Server) newStream(w http.ResponseWriter, r *http.Request, contentType string) *stream {
	st := &stream{s: s, w: w, r: r, rc: http.NewResponseController(w), ctype: contentType}
	st.enc = json.NewEncoder(writerFunc(st.Write))
	return st
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func (st *stream) startLocked() {
	if st.started {
		return
	}
	st.started = true
	st.w.Header().Set("Content-Type", st.ctype)
	st.w.WriteHeader(http.StatusOK)
}

// begin sends the headers now (event streams start before any event).
func (st *stream) begin() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.startLocked()
	_ = st.rc.Flush()
}

func (st *stream) Write(p []byte) (int, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.startLocked()
	n, err := st.w.Write(p)
	if err == nil {
		err = st.rc.Flush()
	}
	return n, err
}

// progress is an images.ProgressFunc writing JSON lines.
func (st *stream) progress(m jsonstream.Message) { _ = st.enc.Encode(m) }

// streamError is the last line of a failed JSON stream; the CLI prints
// errorDetail.message and exits non-zero.
type streamError struct {
	Detail  jsonstream.Error `json:"errorDetail"`
	Message string           `json:"error"`
}

// finish ends the stream with err: a status-coded error when nothing was
// sent yet, else an error line (JSON streams) or a cut-off body (tars).
func (st *stream) finish(err error) {
	if err == nil {
		st.begin()
		return
	}
	st.mu.Lock()
	started := st.started
	st.mu.Unlock()
	if !started {
		st.s.writeError(st.w, st.r, err)
		return
	}
	st.s.log.Debug("docker api stream failed", "path", st.r.URL.Path, "err", err)
	if st.ctype == "application/json" {
		_ = st.enc.Encode(streamError{Detail: jsonstream.Error{Message: err.Error()}, Message: err.Error()})
		return
	}
	// A tar cut short: abort the connection so the client sees an
	// error rather than a truncated archive that looks complete.
	panic(http.ErrAbortHandler)
}

type jsonStreamMessage = jsonstream.Message
