package snapshot

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

func TestCreate(t *testing.T) {
	key := digest.FromString("layer")
	tests := []struct {
		name    string
		fill    func(ctx context.Context, dir string) (Info, error)
		wantErr bool
	}{
		{name: "ok", fill: func(_ context.Context, dir string) (Info, error) {
			return Info{DiffID: digest.FromString("d"), Size: 1}, os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o644)
		}},
		{name: "fill fails half way", wantErr: true, fill: func(_ context.Context, dir string) (Info, error) {
			_ = os.WriteFile(filepath.Join(dir, "half"), []byte("x"), 0o644)
			return Info{}, errors.New("boom")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			created, err := s.Create(context.Background(), key, tt.fill)
			if tt.wantErr {
				if err == nil || created {
					t.Fatalf("Create = %v, %v; want error", created, err)
				}
				if s.Exists(key) {
					t.Fatal("half-filled snapshot visible under its key")
				}
				entries, _ := os.ReadDir(s.Root())
				if len(entries) != 0 {
					t.Fatalf("leftovers after failed fill: %v", entries)
				}
				return
			}
			if err != nil || !created {
				t.Fatalf("Create = %v, %v", created, err)
			}
			if b, err := os.ReadFile(filepath.Join(s.Path(key), "f")); err != nil || string(b) != "x" {
				t.Fatalf("content = %q, %v", b, err)
			}
			info, err := s.Info(key)
			if err != nil || info.DiffID != digest.FromString("d") || info.Size != 1 {
				t.Fatalf("Info = %+v, %v", info, err)
			}
			again, err := s.Create(context.Background(), key, func(context.Context, string) (Info, error) {
				t.Fatal("fill called for an existing snapshot")
				return Info{}, nil
			})
			if err != nil || again {
				t.Fatalf("second Create = %v, %v", again, err)
			}
		})
	}
}

func TestCreateConcurrentOnce(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	key := digest.FromString("shared")
	var fills atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Create(context.Background(), key, func(_ context.Context, dir string) (Info, error) {
				fills.Add(1)
				time.Sleep(50 * time.Millisecond)
				return Info{}, os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o644)
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n := fills.Load(); n != 1 {
		t.Fatalf("fill ran %d times, want 1", n)
	}
}

func TestOpenCleansAndRemove(t *testing.T) {
	root := t.TempDir()
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	key := digest.FromString("k")
	if _, err := s.Create(context.Background(), key, func(context.Context, string) (Info, error) { return Info{}, nil }); err != nil {
		t.Fatal(err)
	}
	// A crash mid-unpack leaves a temp dir.
	if err := os.MkdirAll(filepath.Join(root, tmpPrefix+"abc", "fs", "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	s, err = Open(root)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := s.List()
	if err != nil || len(keys) != 1 || keys[0] != key {
		t.Fatalf("List = %v, %v", keys, err)
	}
	if _, err := os.Stat(filepath.Join(root, tmpPrefix+"abc")); !os.IsNotExist(err) {
		t.Fatal("temp dir not cleaned at open")
	}
	if err := s.Remove(key); err != nil {
		t.Fatal(err)
	}
	if s.Exists(key) {
		t.Fatal("exists after Remove")
	}
	if err := s.Remove(key); err != nil {
		t.Fatalf("second Remove: %v", err)
	}
}
