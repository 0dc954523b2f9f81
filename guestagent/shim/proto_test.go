package shim

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

func TestJSONLog(t *testing.T) {
	fixed := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	tests := []struct {
		name   string
		writes []struct{ stream, data string }
		want   []logEntry
	}{
		{"one line", []struct{ stream, data string }{{"stdout", "hi\n"}},
			[]logEntry{{"hi\n", "stdout", ""}}},
		{"split line joined", []struct{ stream, data string }{{"stdout", "h"}, {"stdout", "i\nx"}},
			[]logEntry{{"hi\n", "stdout", ""}, {"x", "stdout", ""}}},
		{"streams apart", []struct{ stream, data string }{{"stdout", "a"}, {"stderr", "b\n"}, {"stdout", "c\n"}},
			[]logEntry{{"b\n", "stderr", ""}, {"ac\n", "stdout", ""}}},
		{"long line split", []struct{ stream, data string }{{"stderr", strings.Repeat("z", maxLogLine+1)}},
			[]logEntry{{strings.Repeat("z", maxLogLine), "stderr", ""}, {"z", "stderr", ""}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			l := newJSONLog(nopCloser{&buf}, func() time.Time { return fixed })
			for _, w := range tt.writes {
				if err := l.Write(w.stream, []byte(w.data)); err != nil {
					t.Fatal(err)
				}
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			var got []logEntry
			dec := json.NewDecoder(&buf)
			for dec.More() {
				var e logEntry
				if err := dec.Decode(&e); err != nil {
					t.Fatal(err)
				}
				if e.Time != fixed.Format(time.RFC3339Nano) {
					t.Errorf("time = %q", e.Time)
				}
				e.Time = ""
				got = append(got, e)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d entries %+v, want %d", len(got), got, len(tt.want))
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("entry %d = %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestFrames(t *testing.T) {
	tests := []struct {
		name   string
		frames []struct {
			s byte
			d string
		}
		out, err string
	}{
		{"empty", nil, "", ""},
		{"mixed", []struct {
			s byte
			d string
		}{{streamStdout, "a"}, {streamStderr, "b"}, {streamStdout, "c"}}, "ac", "b"},
		{"big", []struct {
			s byte
			d string
		}{{streamStdout, strings.Repeat("x", maxFrame+3)}}, strings.Repeat("x", maxFrame+3), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var wire, out, errb bytes.Buffer
			for _, f := range tt.frames {
				if err := writeFrame(&wire, f.s, []byte(f.d)); err != nil {
					t.Fatal(err)
				}
			}
			if err := readFrames(&wire, &out, &errb); err != nil {
				t.Fatal(err)
			}
			if out.String() != tt.out || errb.String() != tt.err {
				t.Errorf("got %d/%d bytes, want %d/%d", out.Len(), errb.Len(), len(tt.out), len(tt.err))
			}
		})
	}
	// A truncated frame is an error, not a silent end.
	var wire bytes.Buffer
	writeFrame(&wire, streamStdout, []byte("hello"))
	if err := readFrames(bytes.NewReader(wire.Bytes()[:7]), io.Discard, io.Discard); err == nil {
		t.Error("truncated frame: no error")
	}
}

// failWriter is a process that no longer reads its stdin.
type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

func TestStdinFrames(t *testing.T) {
	errDetach := errors.New("client detached")
	tests := []struct {
		name    string
		src     io.Reader
		framed  bool
		process io.Writer // nil: a buffer
		sendErr error     // what sendStdin returns
		got     string    // what the process reads
		eof     bool      // the process's stdin is to be closed
		closed  bool      // the client half-closed
	}{
		{name: "end of input closes", src: strings.NewReader("abc"), framed: true, got: "abc", eof: true, closed: true},
		{name: "empty input closes", src: strings.NewReader(""), framed: true, eof: true, closed: true},
		{name: "detach keeps stdin open", src: io.MultiReader(strings.NewReader("abc"), iotest.ErrReader(errDetach)), framed: true, sendErr: errDetach, got: "abc"},
		{name: "data with the error", src: iotest.DataErrReader(io.MultiReader(strings.NewReader("xy"), iotest.ErrReader(errDetach))), framed: true, sendErr: errDetach, got: "xy"},
		{name: "large input", src: strings.NewReader(strings.Repeat("z", 100000)), framed: true, got: strings.Repeat("z", 100000), eof: true, closed: true},
		{name: "process gone: drained, still closed", src: strings.NewReader("abc"), framed: true, process: failWriter{}, eof: true, closed: true},
		{name: "raw shim: end of input", src: strings.NewReader("abc"), got: "abc", eof: true, closed: true},
		{name: "raw shim: detach does not half-close", src: io.MultiReader(strings.NewReader("abc"), iotest.ErrReader(errDetach)), sendErr: errDetach, got: "abc", eof: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var wire bytes.Buffer
			closed := false
			err := sendStdin(&wire, func() error { closed = true; return nil }, tt.src, tt.framed)
			if !errors.Is(err, tt.sendErr) || (err == nil) != (tt.sendErr == nil) {
				t.Errorf("sendStdin = %v, want %v", err, tt.sendErr)
			}
			if closed != tt.closed {
				t.Errorf("half-closed %v, want %v", closed, tt.closed)
			}
			var proc bytes.Buffer
			w := tt.process
			if w == nil {
				w = &proc
			}
			// The wire ends where the client stopped: a detached
			// client's connection simply closes.
			eof := readStdin(w, &wire, tt.framed)
			if eof != tt.eof || proc.String() != tt.got {
				t.Errorf("process read %d bytes, eof %v; want %d, %v", proc.Len(), eof, len(tt.got), tt.eof)
			}
		})
	}
	// Garbage is not taken for data or for an end of input.
	if readStdin(io.Discard, strings.NewReader("\x07\x00\x00\x00\x01x"), true) {
		t.Error("unknown frame type read as end of input")
	}
}
