package content

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestIngest(t *testing.T) {
	data := []byte("hello blob")
	good := digest.FromBytes(data)
	tests := []struct {
		name     string
		expected digest.Digest
		size     int64
		wantErr  error
	}{
		{name: "ok", expected: good, size: int64(len(data))},
		{name: "unknown size", expected: good, size: -1},
		{name: "wrong digest", expected: digest.FromString("other"), size: -1, wantErr: ErrDigestMismatch},
		{name: "wrong size", expected: good, size: 3, wantErr: ErrDigestMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			err = s.Ingest(context.Background(), tt.expected, tt.size, bytes.NewReader(data))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Ingest error = %v, want %v", err, tt.wantErr)
				}
				if s.Has(tt.expected) {
					t.Fatal("mismatching blob stored under the expected digest")
				}
				if s.Has(good) {
					t.Fatal("mismatching blob stored under its real digest")
				}
				assertEmptyIngest(t, s)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := s.ReadAll(tt.expected)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("ReadAll = %q, %v", got, err)
			}
			assertEmptyIngest(t, s)
		})
	}
}

func assertEmptyIngest(t *testing.T, s *Store) {
	t.Helper()
	entries, err := os.ReadDir(s.ingestDir())
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Fatalf("ingest dir not empty: %v", entries)
	}
}

func TestIngestFailingReader(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	d := digest.FromString("abc")
	r := io.MultiReader(strings.NewReader("ab"), errReader{})
	if err := s.Ingest(context.Background(), d, -1, r); err == nil {
		t.Fatal("want error")
	}
	if s.Has(d) {
		t.Fatal("partial blob stored")
	}
	assertEmptyIngest(t, s)
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

func TestIngestCancelled(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	d := digest.FromString("abc")
	if err := s.Ingest(ctx, d, -1, strings.NewReader("abc")); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if s.Has(d) {
		t.Fatal("blob stored after cancel")
	}
}

func TestConcurrentIngestSameDigest(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("0123456789"), 100000)
	d := digest.FromBytes(data)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- s.Ingest(context.Background(), d, int64(len(data)), bytes.NewReader(data))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.ReadAll(d)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("blob corrupted after concurrent ingest (len %d, err %v)", len(got), err)
	}
	assertEmptyIngest(t, s)
}

func TestOpenCleansLeftovers(t *testing.T) {
	root := t.TempDir()
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	// A crash mid-write leaves a temp file: it must never show under a digest.
	left := filepath.Join(s.ingestDir(), "i-12345")
	if err := os.WriteFile(left, []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(root); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(left); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("leftover temp file still there: %v", err)
	}
	n := 0
	if err := s.Walk(func(digest.Digest, int64) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("Walk found %d blobs, want 0", n)
	}
}

func TestWriterAndWalkDelete(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	w, err := s.Writer()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(w, "streamed"); err != nil {
		t.Fatal(err)
	}
	d, n, err := w.Commit()
	if err != nil {
		t.Fatal(err)
	}
	if d != digest.FromString("streamed") || n != 8 {
		t.Fatalf("Commit = %s %d", d, n)
	}
	_ = w.Close()
	// An abandoned writer leaves nothing.
	w2, err := s.Writer()
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(w2, "abandoned")
	if err := w2.Close(); err != nil {
		t.Fatal(err)
	}
	assertEmptyIngest(t, s)
	var seen []digest.Digest
	if err := s.Walk(func(d digest.Digest, _ int64) error { seen = append(seen, d); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 1 || seen[0] != d {
		t.Fatalf("Walk = %v", seen)
	}
	if err := s.Delete(d); err != nil {
		t.Fatal(err)
	}
	if s.Has(d) {
		t.Fatal("blob still there after Delete")
	}
	if _, err := s.Open(d); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open after delete: %v", err)
	}
}
