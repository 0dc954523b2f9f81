package daemon

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// layeredPath finds rel ("/etc/passwd") in an overlay stack without
// mounting it: layers are top-most first (the upper dir, then the image's
// lower dirs). It honours overlay whiteouts (0:0 character devices) and
// opaque directories, so it sees what the mounted overlay would. It
// returns the path of the entry in the layer that provides it.
func layeredPath(layers []string, rel string) (string, bool) {
	rel = strings.TrimPrefix(path.Clean("/"+rel), "/")
	if rel == "" {
		return "", false
	}
	comps := strings.Split(rel, "/")
	for _, layer := range layers {
		// Walk the parents in this layer: a whiteout or a non-directory
		// hides everything below in lower layers; an opaque directory
		// hides the lower layers' contents of that directory.
		hidden, opaque := false, false
		for i := 0; i < len(comps)-1; i++ {
			p := filepath.Join(layer, filepath.Join(comps[:i+1]...))
			fi, err := os.Lstat(p)
			if err != nil {
				break // not in this layer: look lower
			}
			if isWhiteout(fi) || !fi.IsDir() {
				hidden = true
				break
			}
			if isOpaque(p) {
				opaque = true
			}
		}
		if hidden {
			return "", false
		}
		p := filepath.Join(layer, rel)
		if fi, err := os.Lstat(p); err == nil {
			if isWhiteout(fi) {
				return "", false
			}
			return p, true
		}
		if opaque {
			return "", false
		}
	}
	return "", false
}

func isWhiteout(fi fs.FileInfo) bool {
	if fi.Mode()&fs.ModeCharDevice == 0 {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Rdev == 0
}

func isOpaque(dir string) bool {
	var buf [4]byte
	n, err := unix.Lgetxattr(dir, "trusted.overlay.opaque", buf[:])
	return err == nil && n == 1 && buf[0] == 'y'
}

// layeredReader reads files of an unmounted overlay stack; a symlink as
// the last component is followed within the stack (a few hops).
func layeredReader(layers []string) func(string) ([]byte, error) {
	return func(name string) ([]byte, error) {
		for hops := 0; hops < 8; hops++ {
			p, ok := layeredPath(layers, name)
			if !ok {
				return nil, fmt.Errorf("reading %s: %w", name, fs.ErrNotExist)
			}
			fi, err := os.Lstat(p)
			if err != nil {
				return nil, err
			}
			if fi.Mode()&fs.ModeSymlink == 0 {
				return os.ReadFile(p)
			}
			target, err := os.Readlink(p)
			if err != nil {
				return nil, err
			}
			if !path.IsAbs(target) {
				target = path.Join(path.Dir(name), target)
			}
			name = target
		}
		return nil, fmt.Errorf("reading %s: %w", name, errors.New("too many symlinks"))
	}
}

// rootReader reads files of a mounted container root without following
// symlinks out of it.
func rootReader(root string) func(string) ([]byte, error) {
	return func(name string) ([]byte, error) {
		fd, err := unix.Openat2(unix.AT_FDCWD, root, &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC | unix.O_DIRECTORY})
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: root, Err: err}
		}
		defer unix.Close(fd)
		f, err := unix.Openat2(fd, strings.TrimPrefix(path.Clean("/"+name), "/"), &unix.OpenHow{
			Flags: unix.O_RDONLY | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
		})
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: name, Err: err}
		}
		file := os.NewFile(uintptr(f), name)
		defer file.Close()
		return io.ReadAll(io.LimitReader(file, 16<<20))
	}
}
