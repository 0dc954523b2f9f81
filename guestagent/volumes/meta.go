package volumes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// meta is a volume's meta.json.
type meta struct {
	Name      string            `json:"name"`
	Driver    string            `json:"driver"`
	CreatedAt time.Time         `json:"createdAt"`
	Labels    map[string]string `json:"labels"`
	Options   map[string]string `json:"options"`
	// Refs are the IDs of the containers that use the volume, sorted.
	Refs []string `json:"refs,omitempty"`
	// Filled records that CopyUp copied an image's content in: it never
	// does so again, even once the volume is empty.
	Filled bool `json:"filled,omitempty"`
}

func readMeta(path string) (meta, error) {
	var m meta
	b, err := os.ReadFile(path)
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("decoding %s: %w", path, err)
	}
	return m, nil
}

// writeMeta replaces path atomically: temp file, fsync, rename, so a
// crash leaves the old or the new metadata, never a mix.
func writeMeta(path string, m meta) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encoding volume metadata: %w", err)
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+metaFile+".*")
	if err != nil {
		return fmt.Errorf("writing volume metadata: %w", err)
	}
	_, werr := tmp.Write(b)
	serr := tmp.Sync()
	cerr := tmp.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("writing volume metadata: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("writing volume metadata: %w", err)
	}
	syncDir(dir)
	return nil
}

// syncDir makes a rename in dir durable; best effort.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// dirSize is `du` as dockerd counts it: the sizes of the files under dir,
// hard links once.
func dirSize(ctx context.Context, dir string) (int64, error) {
	var size int64
	seen := map[fileKey]bool{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p != dir && errors.Is(err, fs.ErrNotExist) {
				return nil // removed while walking
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if fi.Size() == 0 {
			return nil
		}
		if k, ok := keyOf(fi); ok {
			if seen[k] {
				return nil
			}
			seen[k] = true
		}
		size += fi.Size()
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("measuring %s: %w", dir, err)
	}
	return size, nil
}

// removeAll is os.RemoveAll that also gets through directories without
// write permission (a copied-up image dir may be 0555).
func removeAll(dir string) error {
	if err := os.RemoveAll(dir); err == nil || !errors.Is(err, fs.ErrPermission) {
		return err
	}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() && d.Type()&fs.ModeSymlink == 0 {
			os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(dir)
}
