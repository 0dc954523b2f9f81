package shim

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"
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
