package shim

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// The shim's RPC is one request per connection on DIR/shim.sock: the
// client writes one JSON line, the shim answers with one JSON line. For
// attach and exec the connection then carries the streams: the shim sends
// framed output (one byte of stream, four of length, the data) and closes
// when the output ends; the client sends stdin as frames too
// (streamStdin), and a streamStdinEOF frame when its input ended, which
// closes the process's stdin. A connection that ends without that frame
// is a client that went away (detached): the process's stdin stays open.
// Shims that predate stdin frames do not answer StdinFrames; with them
// stdin is raw bytes and the client half-closes at its end of input. One
// request per connection keeps both sides free of multiplexing, and a
// dead shim shows as a refused or reset connection.

// Files in a container's state directory.
const (
	specFile   = "spec.json"
	socketFile = "shim.sock"
	exitFile   = "exit.json"
	stateFile  = "shim.json" // pids and warnings, written once the container exists
	shimLog    = "shim.log"
	runcRoot   = "runc"
)

// Operations of the shim's RPC.
const (
	opState   = "state"
	opStart   = "start"
	opSignal  = "signal"
	opWait    = "wait"
	opPause   = "pause"
	opResume  = "resume"
	opAttach  = "attach"
	opResize  = "resize"
	opExec    = "exec"
	opExecSig = "exec-signal"
	opExecRsz = "exec-resize"
	opExecWt  = "exec-wait"
	opStats   = "stats"
	opTop     = "top"
	opDelete  = "delete"
)

type request struct {
	Op      string   `json:"op"`
	Signal  int      `json:"signal,omitempty"`
	Width   uint16   `json:"width,omitempty"`
	Height  uint16   `json:"height,omitempty"`
	ExecID  string   `json:"exec_id,omitempty"`
	Process *Process `json:"process,omitempty"`
	Stdin   bool     `json:"stdin,omitempty"`  // the client will send stdin
	Stdout  bool     `json:"stdout,omitempty"` // the client wants stdout
	Stderr  bool     `json:"stderr,omitempty"` // the client wants stderr
	// StdinFrames: the client sends stdin as frames (see above).
	StdinFrames bool `json:"stdin_frames,omitempty"`
}

type response struct {
	Error string `json:"error,omitempty"`
	Pid   int    `json:"pid,omitempty"`
	Exit  *Exit  `json:"exit,omitempty"`
	Stats *Stats `json:"stats,omitempty"`
	Pids  []int  `json:"pids,omitempty"`
	// StdinFrames: the shim reads the request's stdin as frames.
	StdinFrames bool `json:"stdin_frames,omitempty"`
}

// shimState is what the shim writes to DIR/shim.json once the container
// is created, so a restored engine knows its pids and warnings.
type shimState struct {
	ShimPid  int      `json:"shim_pid"`
	Pid      int      `json:"pid"`
	Warnings []string `json:"warnings,omitempty"`
}

// Streams in frames: output from the shim, stdin from the client.
const (
	streamStdin    byte = 0
	streamStdout   byte = 1
	streamStderr   byte = 2
	streamStdinEOF byte = 3 // no data: the client's input ended
)

const maxFrame = 1 << 20

func writeLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding message: %w", err)
	}
	b = append(b, '\n')
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("writing message: %w", err)
	}
	return nil
}

func readLine(r *bufio.Reader, v any) error {
	b, err := r.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("reading message: %w", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decoding message: %w", err)
	}
	return nil
}

func writeFrame(w io.Writer, stream byte, p []byte) error {
	for len(p) > 0 {
		n := min(len(p), maxFrame)
		var hdr [5]byte
		hdr[0] = stream
		binary.BigEndian.PutUint32(hdr[1:], uint32(n))
		if _, err := w.Write(append(hdr[:], p[:n]...)); err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// sendStdin copies the client's stdin to the shim until src fails. Only
// io.EOF is the end of the client's input: it is passed on (an EOF frame,
// or a half-close with a raw shim) and sendStdin returns nil. Any other
// error is a detach, returned as is, with nothing sent: the process's
// stdin must stay open. A failed write (the stream is over) returns nil.
func sendStdin(w io.Writer, closeWrite func() error, src io.Reader, framed bool) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			var werr error
			if framed {
				werr = writeFrame(w, streamStdin, buf[:n])
			} else {
				_, werr = w.Write(buf[:n])
			}
			if werr != nil {
				return nil
			}
		}
		switch {
		case errors.Is(err, io.EOF):
			if framed {
				if _, err := w.Write([]byte{streamStdinEOF, 0, 0, 0, 0}); err != nil {
					return nil
				}
			}
			_ = closeWrite()
			return nil
		case err != nil:
			return err
		}
	}
}

// readStdin is the shim's side of sendStdin: it copies the client's stdin
// to the process until the connection or the input ends, and reports
// whether the client's input ended (the process's stdin is to be
// closed). Data that the process no longer takes is drained, so the
// client never blocks on it.
func readStdin(w io.Writer, r io.Reader, framed bool) (eof bool) {
	if !framed {
		_, err := io.Copy(w, r)
		return err == nil
	}
	var hdr [5]byte
	buf := make([]byte, 32*1024)
	writable := true
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return false
		}
		n := binary.BigEndian.Uint32(hdr[1:])
		switch {
		case hdr[0] == streamStdinEOF:
			return true
		case hdr[0] != streamStdin || n > maxFrame:
			return false // not our protocol: treat as a detach
		}
		if int(n) > len(buf) {
			buf = make([]byte, n)
		}
		if _, err := io.ReadFull(r, buf[:n]); err != nil {
			return false
		}
		if writable {
			if _, err := w.Write(buf[:n]); err != nil {
				writable = false
			}
		}
	}
}

// readFrames copies frames to stdout and stderr until EOF. A nil writer
// discards its stream.
func readFrames(r io.Reader, stdout, stderr io.Writer) error {
	var hdr [5]byte
	buf := make([]byte, 32*1024)
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("reading frame: %w", err)
		}
		n := binary.BigEndian.Uint32(hdr[1:])
		if n > maxFrame {
			return fmt.Errorf("reading frame: length %d too large", n)
		}
		if int(n) > len(buf) {
			buf = make([]byte, n)
		}
		if _, err := io.ReadFull(r, buf[:n]); err != nil {
			return fmt.Errorf("reading frame: %w", err)
		}
		w := stdout
		if hdr[0] == streamStderr {
			w = stderr
		}
		if w != nil {
			if _, err := w.Write(buf[:n]); err != nil {
				return fmt.Errorf("writing output: %w", err)
			}
		}
	}
}

// writeFileAtomic writes data to path through a temp file and a rename,
// so a reader never sees half a file.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	_, werr := tmp.Write(data)
	serr := tmp.Sync()
	cerr := tmp.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

func writeJSONAtomic(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding %s: %w", path, err)
	}
	return writeFileAtomic(path, b)
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decoding %s: %w", path, err)
	}
	return nil
}

// jsonLog writes Docker's json-file log format: one JSON object per line
// with the line's text (newline included), its stream and its time.
// Output is split at newlines; a partial line waits for its end (or for
// 16 KiB, as Docker splits long lines) so that lines from stdout and
// stderr do not interleave mid-line.
type jsonLog struct {
	mu      sync.Mutex
	w       io.WriteCloser
	now     func() time.Time
	partial map[string][]byte
}

type logEntry struct {
	Log    string `json:"log"`
	Stream string `json:"stream"`
	Time   string `json:"time"`
}

const maxLogLine = 16 * 1024

func newJSONLog(w io.WriteCloser, now func() time.Time) *jsonLog {
	if now == nil {
		now = time.Now
	}
	return &jsonLog{w: w, now: now, partial: map[string][]byte{}}
}

// Write records p as output of stream ("stdout" or "stderr").
func (l *jsonLog) Write(stream string, p []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	buf := append(l.partial[stream], p...)
	for {
		i := indexByte(buf, '\n')
		if i < 0 {
			if len(buf) >= maxLogLine {
				if err := l.entry(stream, buf[:maxLogLine]); err != nil {
					return err
				}
				buf = buf[maxLogLine:]
				continue
			}
			break
		}
		if err := l.entry(stream, buf[:i+1]); err != nil {
			return err
		}
		buf = buf[i+1:]
	}
	l.partial[stream] = append([]byte(nil), buf...)
	return nil
}

// Flush writes out partial lines, at the end of the output.
func (l *jsonLog) Flush() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var errs []error
	for _, s := range []string{"stdout", "stderr"} {
		if len(l.partial[s]) > 0 {
			errs = append(errs, l.entry(s, l.partial[s]))
			l.partial[s] = nil
		}
	}
	return errors.Join(errs...)
}

func (l *jsonLog) Close() error {
	return errors.Join(l.Flush(), l.w.Close())
}

func (l *jsonLog) entry(stream string, line []byte) error {
	b, err := json.Marshal(logEntry{Log: string(line), Stream: stream, Time: l.now().UTC().Format(time.RFC3339Nano)})
	if err != nil {
		return fmt.Errorf("encoding log entry: %w", err)
	}
	if _, err := l.w.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("writing log: %w", err)
	}
	return nil
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}
