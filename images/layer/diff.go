package layer

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	archive "github.com/moby/go-archive"
	"github.com/moby/moby/api/types/container"
)

// WriteDiff writes the uncompressed layer tar of an overlayfs upper dir to
// w: whiteout devices become ".wh.NAME" entries and opaque directories get
// a ".wh..wh..opq" entry, as image layers carry them.
func WriteDiff(ctx context.Context, upperDir string, w io.Writer) error {
	rc, err := archive.TarWithOptions(upperDir, &archive.TarOptions{
		WhiteoutFormat: archive.OverlayWhiteoutFormat,
	})
	if err != nil {
		return fmt.Errorf("archiving %s: %w", upperDir, err)
	}
	defer rc.Close()
	if _, err := io.Copy(w, ctxReader{ctx, rc}); err != nil {
		return fmt.Errorf("archiving %s: %w", upperDir, err)
	}
	return nil
}

// Changes lists what an overlayfs upper dir changes over its lower dirs
// (top-most first), as `docker diff` shows it: paths with a leading "/",
// sorted, each Added, Changed (also every directory a change was copied
// up through) or Deleted.
func Changes(upperDir string, lowerDirs []string) ([]container.FilesystemChange, error) {
	var out []container.FilesystemChange
	add := func(rel string, k container.ChangeType) {
		out = append(out, container.FilesystemChange{Kind: k, Path: "/" + filepath.ToSlash(rel)})
	}
	err := filepath.WalkDir(upperDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == upperDir {
			return nil
		}
		rel, err := filepath.Rel(upperDir, p)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if isWhiteout(fi) {
			if lowerExists(lowerDirs, rel) {
				add(rel, container.ChangeDelete)
			}
			return nil
		}
		if !lowerExists(lowerDirs, rel) {
			add(rel, container.ChangeAdd)
			return nil
		}
		add(rel, container.ChangeModify)
		if d.IsDir() && isOpaque(p) {
			// An opaque dir hides all it had below: what the upper does not
			// recreate is gone.
			names, err := lowerNames(lowerDirs, rel)
			if err != nil {
				return err
			}
			for _, n := range names {
				if _, err := os.Lstat(filepath.Join(p, n)); os.IsNotExist(err) {
					add(filepath.Join(rel, n), container.ChangeDelete)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing changes of %s: %w", upperDir, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// lowerExists reports whether rel exists in the merged view of lowerDirs
// (top-most first), honouring whiteouts and opaque directories. It never
// follows a symlink: a path through one does not exist for overlayfs either.
func lowerExists(lowerDirs []string, rel string) bool {
	comps := strings.Split(filepath.ToSlash(rel), "/")
	for _, l := range lowerDirs {
		found, hidden, stop := lookup(l, comps)
		if found {
			return true
		}
		if stop || hidden {
			return false
		}
	}
	return false
}

// lookup looks rel (as components) up in one layer dir. found: it is there.
// stop: this layer hides it from the layers below (whiteout, a non-dir on
// the way). hidden: an opaque dir on the way hides the layers below.
func lookup(layerDir string, comps []string) (found, hidden, stop bool) {
	cur := layerDir
	for i, c := range comps {
		cur = filepath.Join(cur, c)
		fi, err := os.Lstat(cur)
		if err != nil {
			return false, hidden, false
		}
		if isWhiteout(fi) {
			return false, hidden, true
		}
		if i == len(comps)-1 {
			return true, hidden, false
		}
		if !fi.IsDir() {
			return false, hidden, true
		}
		if isOpaque(cur) {
			hidden = true
		}
	}
	return false, hidden, false
}

// lowerNames lists the names in directory rel of the merged lower view.
func lowerNames(lowerDirs []string, rel string) ([]string, error) {
	comps := strings.Split(filepath.ToSlash(rel), "/")
	seen := map[string]bool{} // name -> visible (false: whited out above)
	var names []string
	for _, l := range lowerDirs {
		found, hidden, stop := lookup(l, comps)
		if !found {
			if stop || hidden {
				break
			}
			continue
		}
		dir := filepath.Join(l, rel)
		fi, err := os.Lstat(dir)
		if err != nil || !fi.IsDir() {
			break
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", dir, err)
		}
		for _, e := range entries {
			if _, ok := seen[e.Name()]; ok {
				continue
			}
			info, err := e.Info()
			if err != nil {
				continue
			}
			visible := !isWhiteout(info)
			seen[e.Name()] = visible
			if visible {
				names = append(names, e.Name())
			}
		}
		if isOpaque(dir) {
			break
		}
	}
	return names, nil
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
