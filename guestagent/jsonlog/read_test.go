package jsonlog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 23, 10, 0, 0, 123456789, time.UTC)

// line encodes one entry as guestagent/shim's jsonLog does.
func line(stream, text string, t time.Time) string {
	b, err := json.Marshal(struct {
		Log    string `json:"log"`
		Stream string `json:"stream"`
		Time   string `json:"time"`
	}{text, stream, t.UTC().Format(time.RFC3339Nano)})
	if err != nil {
		panic(err)
	}
	return string(b) + "\n"
}

func writeLog(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ctr-json.log")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func appendLog(t *testing.T, path, content string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Error(err)
		return
	}
	defer f.Close()
	if _, err := f.WriteString(content); err != nil {
		t.Error(err)
	}
}

// collect reads all and returns "stream:text" strings.
func collect(ctx context.Context, path string, opts ReadOptions, stopped <-chan struct{}) ([]string, error) {
	var got []string
	err := Read(ctx, path, opts, stopped, func(e Entry) error {
		got = append(got, e.Stream+":"+string(e.Line))
		return nil
	})
	return got, err
}

func TestReadFilters(t *testing.T) {
	var b strings.Builder
	for i := range 6 {
		stream := "stdout"
		if i%2 == 1 {
			stream = "stderr"
		}
		b.WriteString(line(stream, fmt.Sprintf("l%d\n", i), t0.Add(time.Duration(i)*time.Second)))
	}
	path := writeLog(t, b.String())
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Second) }

	tests := []struct {
		name string
		opts ReadOptions
		want string
	}{
		{"all", ReadOptions{Stdout: true, Stderr: true, Tail: -1}, "0 1 2 3 4 5"},
		{"stdout", ReadOptions{Stdout: true, Tail: -1}, "0 2 4"},
		{"stderr", ReadOptions{Stderr: true, Tail: -1}, "1 3 5"},
		{"no stream", ReadOptions{Tail: -1}, ""},
		{"since is inclusive", ReadOptions{Stdout: true, Stderr: true, Tail: -1, Since: at(3)}, "3 4 5"},
		{"since between", ReadOptions{Stdout: true, Stderr: true, Tail: -1, Since: at(3).Add(-time.Nanosecond)}, "3 4 5"},
		{"until is inclusive", ReadOptions{Stdout: true, Stderr: true, Tail: -1, Until: at(2)}, "0 1 2"},
		{"since and until", ReadOptions{Stdout: true, Stderr: true, Tail: -1, Since: at(1), Until: at(4)}, "1 2 3 4"},
		{"tail 2", ReadOptions{Stdout: true, Stderr: true, Tail: 2}, "4 5"},
		{"tail 0", ReadOptions{Stdout: true, Stderr: true, Tail: 0}, ""},
		{"tail more than lines", ReadOptions{Stdout: true, Stderr: true, Tail: 100}, "0 1 2 3 4 5"},
		{"tail counts matching stream", ReadOptions{Stderr: true, Tail: 2}, "3 5"},
		{"tail with until", ReadOptions{Stdout: true, Stderr: true, Tail: 2, Until: at(3)}, "2 3"},
		{"tail with since", ReadOptions{Stdout: true, Stderr: true, Tail: 5, Since: at(4)}, "4 5"},
		{"tail stdout until", ReadOptions{Stdout: true, Tail: 1, Until: at(3)}, "2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := collect(context.Background(), path, tt.opts, nil)
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, f := range strings.Fields(tt.want) {
				var i int
				fmt.Sscan(f, &i)
				stream := "stdout"
				if i%2 == 1 {
					stream = "stderr"
				}
				want = append(want, fmt.Sprintf("%s:l%d\n", stream, i))
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("got %q, want %q", got, want)
			}
		})
	}
}

func TestReadEntryFields(t *testing.T) {
	path := writeLog(t, line("stderr", "x \"quoted\" \x01 é\r\n", t0)+line("stdout", "no newline", t0.Add(time.Hour)))
	var got []Entry
	err := Read(context.Background(), path, ReadOptions{Stdout: true, Stderr: true, Tail: -1}, nil, func(e Entry) error {
		got = append(got, e)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("got %d entries, want 2", len(got))
	}
	if got[0].Stream != "stderr" || string(got[0].Line) != "x \"quoted\" \x01 é\r\n" || !got[0].Time.Equal(t0) {
		t.Errorf("first entry: %+v", got[0])
	}
	if got[1].Stream != "stdout" || string(got[1].Line) != "no newline" || !got[1].Time.Equal(t0.Add(time.Hour)) {
		t.Errorf("second entry: %+v", got[1])
	}
}

func TestReadCorruptAndPartial(t *testing.T) {
	content := line("stdout", "a\n", t0) +
		"not json\n" +
		`{"log":"bad time\n","stream":"stdout","time":"yesterday"}` + "\n" +
		`{"stream":"stdout","time":"2026-11-23T10:00:00Z"}` + "\n" + // no log
		line("weird", "unknown stream\n", t0) +
		"\n" +
		line("stderr", "b\n", t0) +
		`{"log":"partial`
	path := writeLog(t, content)
	for _, tail := range []int{-1, 1, 2, 10} {
		got, err := collect(context.Background(), path, ReadOptions{Stdout: true, Stderr: true, Tail: tail}, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"stdout:a\n", "stderr:b\n"}
		if tail >= 0 && tail < len(want) {
			want = want[len(want)-tail:]
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("tail %d: got %q, want %q", tail, got, want)
		}
	}
}

func TestReadMissingFile(t *testing.T) {
	got, err := collect(context.Background(), filepath.Join(t.TempDir(), "nope.log"), ReadOptions{Stdout: true, Tail: 3}, nil)
	if err != nil || len(got) != 0 {
		t.Errorf("got %q, %v; want nothing", got, err)
	}
}

func TestReadFnError(t *testing.T) {
	path := writeLog(t, line("stdout", "a\n", t0)+line("stdout", "b\n", t0))
	boom := errors.New("boom")
	n := 0
	err := Read(context.Background(), path, ReadOptions{Stdout: true, Tail: -1, Follow: true}, nil, func(Entry) error {
		n++
		return boom
	})
	if !errors.Is(err, boom) || n != 1 {
		t.Errorf("got %v after %d calls, want boom after 1", err, n)
	}
}

// TestTailAcrossBlocks checks the backward scan against the forward read
// with lines of many lengths, so that lines straddle block boundaries,
// and one line longer than maxLine (corrupt, skipped both ways).
func TestTailAcrossBlocks(t *testing.T) {
	var b strings.Builder
	var all []string
	for i := range 400 {
		text := fmt.Sprintf("%d:%s\n", i, strings.Repeat("x", (i*7919)%3000))
		if i == 200 {
			b.WriteString(`{"log":"` + strings.Repeat("y", maxLine+10) + `","stream":"stdout","time":"2026-11-23T10:00:00Z"}` + "\n")
		}
		b.WriteString(line("stdout", text, t0))
		all = append(all, "stdout:"+text)
	}
	path := writeLog(t, b.String())
	got, err := collect(context.Background(), path, ReadOptions{Stdout: true, Tail: -1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(all) {
		t.Fatalf("reading all: got %d entries, want %d", len(got), len(all))
	}
	for _, n := range []int{1, 2, 17, 199, 200, 201, 399, 400, 401} {
		got, err := collect(context.Background(), path, ReadOptions{Stdout: true, Tail: n}, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := all[max(0, len(all)-n):]
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("tail %d: got %d entries, want %d", n, len(got), len(want))
		}
	}
}

type countingReaderAt struct {
	r *bytes.Reader
	n int64
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.n += int64(n)
	return n, err
}

// TestTailReadsBackwards checks that a tail of a big log reads only its
// end.
func TestTailReadsBackwards(t *testing.T) {
	one := line("stdout", strings.Repeat("z", 100)+"\n", t0)
	data := []byte(strings.Repeat(one, (64<<20)/len(one)) + line("stderr", "last\n", t0) + `{"log":"parti`)
	all := func(Entry) bool { return true }
	tests := []struct {
		n        int
		wantFrom int
	}{
		{0, len(data) - len(`{"log":"parti`)},
		{1, len(data) - len(`{"log":"parti`) - len(line("stderr", "last\n", t0))},
		{3, len(data) - len(`{"log":"parti`) - len(line("stderr", "last\n", t0)) - 2*len(one)},
	}
	for _, tt := range tests {
		ra := &countingReaderAt{r: bytes.NewReader(data)}
		off, err := tailOffset(ra, int64(len(data)), tt.n, all)
		if err != nil {
			t.Fatal(err)
		}
		if off != int64(tt.wantFrom) {
			t.Errorf("tail %d: offset %d, want %d", tt.n, off, tt.wantFrom)
		}
		if ra.n > 2*blockSize {
			t.Errorf("tail %d read %d bytes of %d", tt.n, ra.n, len(data))
		}
	}
}

func TestFollowConcurrentWriter(t *testing.T) {
	path := writeLog(t, line("stdout", "old\n", t0))
	stopped := make(chan struct{})
	const n = 2000
	var want []string
	var content bytes.Buffer
	for i := range n {
		stream := []string{"stdout", "stderr"}[i%2]
		text := fmt.Sprintf("line %d\n", i)
		want = append(want, stream+":"+text)
		content.WriteString(line(stream, text, t0.Add(time.Duration(i))))
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(stopped)
		// Odd-sized writes split lines, as a writer racing the reader would.
		data := content.Bytes()
		for len(data) > 0 {
			k := min(len(data), 37)
			appendLog(t, path, string(data[:k]))
			data = data[k:]
		}
	}()
	got, err := collect(context.Background(), path, ReadOptions{Stdout: true, Stderr: true, Tail: 0, Follow: true}, stopped)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	// Tail 0 may or may not see the first writes, which raced the start
	// of Read; what it sees must be a suffix of the writes, and all of
	// them through the end.
	if len(got) == 0 || len(got) > n || fmt.Sprint(got) != fmt.Sprint(want[n-len(got):]) {
		t.Fatalf("got %d entries (first %q), want a suffix of the %d written", len(got), first(got), n)
	}
	got, err = collect(context.Background(), path, ReadOptions{Stdout: true, Stderr: true, Tail: -1, Follow: true}, stopped)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(append([]string{"stdout:old\n"}, want...)) {
		t.Errorf("after the writer: got %d entries, want %d", len(got), n+1)
	}
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// followed runs a following Read in the background; entries arrive on
// the returned channel, the result on errc.
func followed(ctx context.Context, path string, opts ReadOptions, stopped <-chan struct{}) (<-chan string, <-chan error) {
	out := make(chan string, 100)
	errc := make(chan error, 1)
	opts.Follow = true
	go func() {
		errc <- Read(ctx, path, opts, stopped, func(e Entry) error {
			out <- e.Stream + ":" + string(e.Line)
			return nil
		})
	}()
	return out, errc
}

func expect(t *testing.T, out <-chan string, want string) {
	t.Helper()
	select {
	case got := <-out:
		if got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %q", want)
	}
}

func TestFollowCases(t *testing.T) {
	tests := []struct {
		name string
		// setup returns the log path; it may create nothing.
		setup func(t *testing.T) string
		opts  ReadOptions
		// then acts on the file while Read follows it.
		then func(t *testing.T, path string, out <-chan string)
	}{
		{
			name:  "partial line completes",
			setup: func(t *testing.T) string { return writeLog(t, line("stdout", "a\n", t0)+`{"log":"b\n","str`) },
			opts:  ReadOptions{Stdout: true, Tail: -1},
			then: func(t *testing.T, path string, out <-chan string) {
				expect(t, out, "stdout:a\n")
				appendLog(t, path, `eam":"stdout","time":"2026-11-23T10:00:00Z"}`)
				time.Sleep(50 * time.Millisecond)
				appendLog(t, path, "\n")
				expect(t, out, "stdout:b\n")
			},
		},
		{
			name:  "tail 0 with partial line",
			setup: func(t *testing.T) string { return writeLog(t, line("stdout", "a\n", t0)+`{"log":"b\n","str`) },
			opts:  ReadOptions{Stdout: true, Tail: 0},
			then: func(t *testing.T, path string, out <-chan string) {
				// Let Read find the end first: nothing tells a test when.
				time.Sleep(100 * time.Millisecond)
				appendLog(t, path, `eam":"stdout","time":"2026-11-23T10:00:00Z"}`+"\n")
				expect(t, out, "stdout:b\n")
			},
		},
		{
			name:  "file appears",
			setup: func(t *testing.T) string { return filepath.Join(t.TempDir(), "later.log") },
			opts:  ReadOptions{Stdout: true, Tail: 0},
			then: func(t *testing.T, path string, out <-chan string) {
				time.Sleep(50 * time.Millisecond)
				appendLog(t, path, line("stdout", "first\n", t0))
				expect(t, out, "stdout:first\n")
			},
		},
		{
			name:  "directory appears (poll)",
			setup: func(t *testing.T) string { return filepath.Join(t.TempDir(), "sub", "later.log") },
			opts:  ReadOptions{Stdout: true, Tail: -1},
			then: func(t *testing.T, path string, out <-chan string) {
				if err := os.Mkdir(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				appendLog(t, path, line("stdout", "first\n", t0))
				expect(t, out, "stdout:first\n")
			},
		},
		{
			name:  "truncated",
			setup: func(t *testing.T) string { return writeLog(t, line("stdout", "a\n", t0)+line("stdout", "b\n", t0)) },
			opts:  ReadOptions{Stdout: true, Tail: 1},
			then: func(t *testing.T, path string, out <-chan string) {
				expect(t, out, "stdout:b\n")
				if err := os.Truncate(path, 0); err != nil {
					t.Fatal(err)
				}
				appendLog(t, path, line("stdout", "c\n", t0))
				expect(t, out, "stdout:c\n")
			},
		},
		{
			name:  "replaced",
			setup: func(t *testing.T) string { return writeLog(t, line("stdout", "a\n", t0)) },
			opts:  ReadOptions{Stdout: true, Tail: -1},
			then: func(t *testing.T, path string, out <-chan string) {
				expect(t, out, "stdout:a\n")
				tmp := path + ".new"
				if err := os.WriteFile(tmp, []byte(line("stdout", "new\n", t0)), 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.Rename(tmp, path); err != nil {
					t.Fatal(err)
				}
				expect(t, out, "stdout:new\n")
			},
		},
		{
			name:  "stream and since filters apply to new lines",
			setup: func(t *testing.T) string { return writeLog(t, "") },
			opts:  ReadOptions{Stderr: true, Tail: -1, Since: t0},
			then: func(t *testing.T, path string, out <-chan string) {
				appendLog(t, path, line("stdout", "out\n", t0)+line("stderr", "old\n", t0.Add(-time.Second))+line("stderr", "err\n", t0))
				expect(t, out, "stderr:err\n")
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tt.setup(t)
			stopped := make(chan struct{})
			out, errc := followed(context.Background(), path, tt.opts, stopped)
			tt.then(t, path, out)
			close(stopped)
			if err := <-errc; err != nil {
				t.Fatalf("Read: %v", err)
			}
			select {
			case extra := <-out:
				t.Errorf("unexpected entry %q", extra)
			default:
			}
		})
	}
}

func TestFollowStoppedDrains(t *testing.T) {
	path := writeLog(t, "")
	stopped := make(chan struct{})
	out, errc := followed(context.Background(), path, ReadOptions{Stdout: true, Tail: -1}, stopped)
	time.Sleep(20 * time.Millisecond)
	// Written and stopped at once: the last lines must still come out.
	appendLog(t, path, line("stdout", "x\n", t0)+line("stdout", "y\n", t0))
	close(stopped)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	expect(t, out, "stdout:x\n")
	expect(t, out, "stdout:y\n")
}

func TestFollowContextCancel(t *testing.T) {
	path := writeLog(t, line("stdout", "a\n", t0))
	ctx, cancel := context.WithCancel(context.Background())
	out, errc := followed(ctx, path, ReadOptions{Stdout: true, Tail: -1}, nil)
	expect(t, out, "stdout:a\n")
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("got %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Read did not return after cancel")
	}
}

func TestFollowUntil(t *testing.T) {
	path := writeLog(t, line("stdout", "a\n", t0))
	// An Until in the past: read what is there and return.
	out, errc := followed(context.Background(), path, ReadOptions{Stdout: true, Tail: -1, Until: time.Now().Add(-time.Minute)}, nil)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	expect(t, out, "stdout:a\n")

	// An Until just ahead: return once the clock passes it.
	out, errc = followed(context.Background(), path, ReadOptions{Stdout: true, Tail: 0, Until: time.Now().Add(300 * time.Millisecond)}, nil)
	select {
	case err := <-errc:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Read did not return after Until")
	}
	if len(out) != 0 {
		t.Errorf("unexpected entries")
	}

	// An entry after Until ends the follow.
	until := time.Now().Add(time.Hour)
	out, errc = followed(context.Background(), path, ReadOptions{Stdout: true, Tail: 0, Until: until}, nil)
	time.Sleep(20 * time.Millisecond)
	appendLog(t, path, line("stdout", "in\n", until)+line("stdout", "late\n", until.Add(time.Second)))
	select {
	case err := <-errc:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Read did not return after an entry past Until")
	}
	expect(t, out, "stdout:in\n")
	if len(out) != 0 {
		t.Errorf("entry after Until emitted")
	}
}
