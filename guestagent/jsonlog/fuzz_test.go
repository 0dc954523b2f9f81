package jsonlog

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// FuzzRead checks that Read never panics on any file content and that a
// tail read (backwards) agrees with the end of a full read (forwards).
func FuzzRead(f *testing.F) {
	f.Add([]byte(line("stdout", "a\n", t0)+line("stderr", "b\n", t0)), 1)
	f.Add([]byte(line("stdout", "a\n", t0)+"garbage\n\n"+`{"log":"p`), 2)
	f.Add([]byte("\n\n\n"), 0)
	f.Add([]byte(`{"log":"x","stream":"stdout","time":"2026-11-23T10:00:00Z"}`+"\n"+`{"log":null}`+"\n"), 3)
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte, tail int) {
		path := filepath.Join(dir, "fuzz.log")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		opts := ReadOptions{Stdout: true, Stderr: true, Tail: -1}
		all, err := collect(context.Background(), path, opts, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range all {
			if len(e) < 7 || (e[:7] != "stdout:" && e[:7] != "stderr:") {
				t.Fatalf("entry with a bad stream: %q", e)
			}
		}
		opts.Tail = tail % 8
		got, err := collect(context.Background(), path, opts, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := all
		if opts.Tail >= 0 && opts.Tail < len(all) {
			want = all[len(all)-opts.Tail:]
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("tail %d: got %q, want %q", opts.Tail, got, want)
		}
	})
}
