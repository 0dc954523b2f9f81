// Package snapshot keeps unpacked layer directories, one per chain ID, for
// use as overlayfs lower dirs: root/<hex of chain ID>/fs.
//
// A snapshot is filled in a temporary directory and renamed into place, so
// a crash never leaves a half-unpacked layer under its key; removal renames
// it away first for the same reason. Open deletes leftovers of both.
// Concurrent Creates of one key in a process run the fill once. The store
// does not decide when a snapshot is unused: package images does.
package snapshot

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"
)

// ErrNotFound is returned for a key the store does not hold.
var ErrNotFound = errors.New("snapshot not found")

const (
	tmpPrefix = ".tmp-"
	infoFile  = "info.json"
)

// Info describes the layer a snapshot holds; the fill function of Create
// returns it and it is stored with the snapshot.
type Info struct {
	DiffID  digest.Digest `json:"diffID"`
	Size    int64         `json:"size"`    // bytes of regular file content
	TarSize int64         `json:"tarSize"` // bytes of the uncompressed layer tar
}

// Store is a directory of snapshots.
type Store struct {
	root string

	mu       sync.Mutex
	inflight map[digest.Digest]*call
}

type call struct {
	done chan struct{}
	err  error
}

// Open opens (creating if needed) the store in root and removes the
// temporary directories a crash left.
func Open(root string) (*Store, error) {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("creating snapshot dir: %w", err)
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("reading snapshot dir: %w", err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			if err := os.RemoveAll(filepath.Join(root, e.Name())); err != nil {
				return nil, fmt.Errorf("removing unfinished snapshot: %w", err)
			}
		}
	}
	return &Store{root: root, inflight: map[digest.Digest]*call{}}, nil
}

// Root is the directory holding all snapshots. Overlay mounts with many
// layers can use paths relative to it to stay under the mount data limit.
func (s *Store) Root() string { return s.root }

// Dir is the snapshot's directory relative to Root ("<hex>/fs").
func Dir(key digest.Digest) string { return filepath.Join(key.Encoded(), "fs") }

// Path is the absolute directory of snapshot key, the overlay lower dir.
func (s *Store) Path(key digest.Digest) string { return filepath.Join(s.root, Dir(key)) }

// Exists reports whether snapshot key is complete.
func (s *Store) Exists(key digest.Digest) bool {
	if key.Validate() != nil {
		return false
	}
	fi, err := os.Stat(s.Path(key))
	return err == nil && fi.IsDir()
}

// Create makes snapshot key by calling fill on an empty directory, unless
// it exists already; created reports whether fill ran in this call. If fill
// fails nothing is kept. Concurrent calls for one key run fill once; the
// others wait for it and return its error.
func (s *Store) Create(ctx context.Context, key digest.Digest, fill func(ctx context.Context, dir string) (Info, error)) (created bool, err error) {
	if err := key.Validate(); err != nil {
		return false, fmt.Errorf("creating snapshot %q: %w", key, err)
	}
	for {
		if s.Exists(key) {
			return false, nil
		}
		s.mu.Lock()
		c, busy := s.inflight[key]
		if !busy {
			c = &call{done: make(chan struct{})}
			s.inflight[key] = c
		}
		s.mu.Unlock()
		if busy {
			select {
			case <-c.done:
			case <-ctx.Done():
				return false, ctx.Err()
			}
			if c.err != nil {
				return false, c.err
			}
			continue
		}
		c.err = s.create(ctx, key, fill)
		s.mu.Lock()
		delete(s.inflight, key)
		s.mu.Unlock()
		close(c.done)
		return c.err == nil, c.err
	}
}

func (s *Store) create(ctx context.Context, key digest.Digest, fill func(context.Context, string) (Info, error)) error {
	tmp := filepath.Join(s.root, tmpPrefix+randomHex())
	if err := os.MkdirAll(filepath.Join(tmp, "fs"), 0o755); err != nil {
		return fmt.Errorf("creating snapshot %s: %w", key, err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = os.RemoveAll(tmp)
		}
	}()
	info, err := fill(ctx, filepath.Join(tmp, "fs"))
	if err != nil {
		return err
	}
	b, err := json.Marshal(info)
	if err != nil {
		return fmt.Errorf("encoding snapshot info: %w", err)
	}
	if err := os.WriteFile(filepath.Join(tmp, infoFile), b, 0o600); err != nil {
		return fmt.Errorf("writing snapshot info: %w", err)
	}
	// Make the content durable before the rename publishes it.
	if err := syncFS(tmp); err != nil {
		return fmt.Errorf("syncing snapshot %s: %w", key, err)
	}
	if err := os.Rename(tmp, filepath.Join(s.root, key.Encoded())); err != nil {
		if s.Exists(key) {
			return nil // another process won; same content
		}
		return fmt.Errorf("committing snapshot %s: %w", key, err)
	}
	ok = true
	return syncDir(s.root)
}

// Info returns what Create stored with snapshot key.
func (s *Store) Info(key digest.Digest) (Info, error) {
	if err := key.Validate(); err != nil {
		return Info{}, fmt.Errorf("reading snapshot %q: %w", key, err)
	}
	b, err := os.ReadFile(filepath.Join(s.root, key.Encoded(), infoFile))
	if errors.Is(err, fs.ErrNotExist) {
		return Info{}, fmt.Errorf("reading snapshot %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return Info{}, fmt.Errorf("reading snapshot %s: %w", key, err)
	}
	var info Info
	if err := json.Unmarshal(b, &info); err != nil {
		return Info{}, fmt.Errorf("decoding snapshot %s info: %w", key, err)
	}
	return info, nil
}

// Remove deletes snapshot key; a missing one is not an error.
func (s *Store) Remove(key digest.Digest) error {
	if err := key.Validate(); err != nil {
		return fmt.Errorf("removing snapshot %q: %w", key, err)
	}
	tmp := filepath.Join(s.root, tmpPrefix+"rm-"+randomHex())
	if err := os.Rename(filepath.Join(s.root, key.Encoded()), tmp); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("removing snapshot %s: %w", key, err)
	}
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("removing snapshot %s: %w", key, err)
	}
	return nil
}

// List returns the keys (sha256) of all complete snapshots.
func (s *Store) List() ([]digest.Digest, error) {
	entries, err := os.ReadDir(s.root)
	if err != nil {
		return nil, fmt.Errorf("listing snapshots: %w", err)
	}
	var out []digest.Digest
	for _, e := range entries {
		d := digest.NewDigestFromEncoded(digest.SHA256, e.Name())
		if e.IsDir() && d.Validate() == nil {
			out = append(out, d)
		}
	}
	return out, nil
}

func randomHex() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) && !errors.Is(err, errors.ErrUnsupported) {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}
