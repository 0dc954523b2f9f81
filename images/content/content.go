// Package content is the content-addressed blob store of the image store:
// manifests, configs and compressed layers, each kept under its digest.
//
// A write streams into a temporary file in the same filesystem, verifies the
// digest (and size, when known) while streaming, fsyncs and renames into
// place, so a blob under a digest is always complete and correct. Leftover
// temporary files from a crash are removed by Open. The store does not know
// which blobs are in use: garbage collection is the caller's (package images).
package content

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"

	// Register the hash functions go-digest uses.
	_ "crypto/sha256"
	_ "crypto/sha512"
)

// ErrDigestMismatch is returned when written content does not hash to the
// expected digest or does not have the expected size. Nothing is stored.
var ErrDigestMismatch = errors.New("content digest mismatch")

// ErrNotFound is returned for a digest the store does not hold.
var ErrNotFound = errors.New("blob not found")

// Store holds blobs under root/blobs/<alg>/<hex>; root/ingest holds
// in-progress writes.
type Store struct {
	root string
}

// Open opens (creating if needed) the store in root and removes temporary
// files left by a crash.
func Open(root string) (*Store, error) {
	s := &Store{root: root}
	if err := os.RemoveAll(s.ingestDir()); err != nil {
		return nil, fmt.Errorf("cleaning content ingest dir: %w", err)
	}
	for _, d := range []string{s.ingestDir(), filepath.Join(root, "blobs")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("creating content dir: %w", err)
		}
	}
	return s, nil
}

func (s *Store) ingestDir() string { return filepath.Join(s.root, "ingest") }

// Path is where the blob d lives (or would live).
func (s *Store) Path(d digest.Digest) string {
	return filepath.Join(s.root, "blobs", string(d.Algorithm()), d.Encoded())
}

// Has reports whether the store holds d.
func (s *Store) Has(d digest.Digest) bool {
	if d.Validate() != nil {
		return false
	}
	fi, err := os.Stat(s.Path(d))
	return err == nil && fi.Mode().IsRegular()
}

// Size returns the size of blob d.
func (s *Store) Size(d digest.Digest) (int64, error) {
	if err := d.Validate(); err != nil {
		return 0, fmt.Errorf("stat blob %q: %w", d, err)
	}
	fi, err := os.Stat(s.Path(d))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("stat blob %s: %w", d, ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("stat blob %s: %w", d, err)
	}
	return fi.Size(), nil
}

// Open opens blob d for reading.
func (s *Store) Open(d digest.Digest) (*os.File, error) {
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("open blob %q: %w", d, err)
	}
	f, err := os.Open(s.Path(d))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("open blob %s: %w", d, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("open blob %s: %w", d, err)
	}
	return f, nil
}

// ReadAll returns the content of blob d; meant for small blobs (manifests,
// configs).
func (s *Store) ReadAll(d digest.Digest) ([]byte, error) {
	f, err := s.Open(d)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("reading blob %s: %w", d, err)
	}
	return b, nil
}

// Ingest stores what r yields under expected. size is the expected size,
// or -1 when unknown. The content is verified while streaming; on a
// mismatch (ErrDigestMismatch) or any error nothing is stored. Concurrent
// ingests of one digest are safe: each writes its own temporary file and
// the last rename wins with identical content. If the blob is already
// present, r is not read.
func (s *Store) Ingest(ctx context.Context, expected digest.Digest, size int64, r io.Reader) error {
	if err := expected.Validate(); err != nil {
		return fmt.Errorf("ingesting blob %q: %w", expected, err)
	}
	if s.Has(expected) {
		return nil
	}
	_, _, err := s.write(ctx, expected.Algorithm(), r, func(got digest.Digest, n int64) error {
		if got != expected {
			return fmt.Errorf("%w: expected %s, got %s", ErrDigestMismatch, expected, got)
		}
		if size >= 0 && n != size {
			return fmt.Errorf("%w: %s: expected %d bytes, got %d", ErrDigestMismatch, expected, size, n)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("ingesting blob %s: %w", expected, err)
	}
	return nil
}

// Write stores what r yields under its sha256 digest, which it returns
// with the size.
func (s *Store) Write(ctx context.Context, r io.Reader) (digest.Digest, int64, error) {
	d, n, err := s.write(ctx, digest.SHA256, r, nil)
	if err != nil {
		return "", 0, fmt.Errorf("writing blob: %w", err)
	}
	return d, n, nil
}

// Writer returns a writer whose content is committed under its sha256
// digest by Commit. Close without Commit discards it.
func (s *Store) Writer() (*Writer, error) {
	f, err := os.CreateTemp(s.ingestDir(), "w-")
	if err != nil {
		return nil, fmt.Errorf("creating blob writer: %w", err)
	}
	return &Writer{s: s, f: f, h: digest.SHA256.Digester()}, nil
}

// Writer streams a blob of yet unknown digest into the store.
type Writer struct {
	s    *Store
	f    *os.File
	h    digest.Digester
	n    int64
	done bool
}

func (w *Writer) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.h.Hash().Write(p[:n])
	w.n += int64(n)
	return n, err
}

// Digest is the digest of what was written so far.
func (w *Writer) Digest() digest.Digest { return w.h.Digest() }

// Commit fsyncs and renames the blob into place and returns its digest
// and size.
func (w *Writer) Commit() (digest.Digest, int64, error) {
	d := w.h.Digest()
	if err := w.s.commit(w.f, d); err != nil {
		return "", 0, err
	}
	w.done = true
	return d, w.n, nil
}

// Close discards an uncommitted blob.
func (w *Writer) Close() error {
	if w.done {
		return nil
	}
	w.done = true
	return errors.Join(w.f.Close(), os.Remove(w.f.Name()))
}

func (s *Store) write(ctx context.Context, alg digest.Algorithm, r io.Reader, check func(digest.Digest, int64) error) (digest.Digest, int64, error) {
	if !alg.Available() {
		return "", 0, fmt.Errorf("unsupported digest algorithm %q", alg)
	}
	f, err := os.CreateTemp(s.ingestDir(), "i-")
	if err != nil {
		return "", 0, fmt.Errorf("creating temp blob: %w", err)
	}
	committed := false
	defer func() {
		if !committed {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	h := alg.Digester()
	n, err := io.Copy(io.MultiWriter(f, h.Hash()), ctxReader{ctx, r})
	if err != nil {
		return "", 0, fmt.Errorf("copying blob: %w", err)
	}
	got := h.Digest()
	if check != nil {
		if err := check(got, n); err != nil {
			return "", 0, err
		}
	}
	if err := s.commit(f, got); err != nil {
		return "", 0, err
	}
	committed = true
	return got, n, nil
}

// commit fsyncs f, closes it and renames it to d's path.
func (s *Store) commit(f *os.File, d digest.Digest) error {
	name := f.Name()
	err := f.Sync()
	if err == nil {
		err = f.Chmod(0o444)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(name)
		return fmt.Errorf("syncing blob %s: %w", d, err)
	}
	dst := s.Path(d)
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		_ = os.Remove(name)
		return fmt.Errorf("creating blob dir: %w", err)
	}
	if err := os.Rename(name, dst); err != nil {
		_ = os.Remove(name)
		return fmt.Errorf("committing blob %s: %w", d, err)
	}
	return syncDir(filepath.Dir(dst))
}

// Delete removes blob d; a missing blob is not an error.
func (s *Store) Delete(d digest.Digest) error {
	if err := d.Validate(); err != nil {
		return fmt.Errorf("deleting blob %q: %w", d, err)
	}
	if err := os.Remove(s.Path(d)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("deleting blob %s: %w", d, err)
	}
	return nil
}

// Walk calls fn for every stored blob.
func (s *Store) Walk(fn func(d digest.Digest, size int64) error) error {
	algs, err := os.ReadDir(filepath.Join(s.root, "blobs"))
	if err != nil {
		return fmt.Errorf("listing blobs: %w", err)
	}
	for _, a := range algs {
		entries, err := os.ReadDir(filepath.Join(s.root, "blobs", a.Name()))
		if err != nil {
			return fmt.Errorf("listing blobs: %w", err)
		}
		for _, e := range entries {
			d := digest.NewDigestFromEncoded(digest.Algorithm(a.Name()), e.Name())
			if d.Validate() != nil {
				continue
			}
			info, err := e.Info()
			if err != nil {
				continue
			}
			if err := fn(d, info.Size()); err != nil {
				return err
			}
		}
	}
	return nil
}

// syncDir fsyncs a directory so a rename in it survives a power loss.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !isSyncUnsupported(err) {
		return fmt.Errorf("syncing dir %s: %w", dir, err)
	}
	return nil
}

// isSyncUnsupported reports errors of fsync on a directory on systems that
// do not allow it (Windows).
func isSyncUnsupported(err error) bool {
	var pe *fs.PathError
	return errors.As(err, &pe) && (errors.Is(err, os.ErrInvalid) || errors.Is(err, errors.ErrUnsupported))
}

// ctxReader makes a long copy stop when ctx is cancelled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
