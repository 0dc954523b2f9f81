// Package ctrfs does the archive operations of the Docker API on a
// container's filesystem: stat a path (HEAD .../archive), tar a path (GET
// .../archive, docker cp out), extract a tar into a directory (PUT
// .../archive, docker cp in) and tar the whole root filesystem (docker
// export).
//
// The engine gives it the container's root (the mounted overlay) and its
// mounts as host directories; ctrfs resolves paths as the container sees
// them, mounts and symlinks included, without entering the container's
// mount namespace. Symlinks are resolved in container path space, so
// none can lead outside the container's root and mounts; every access
// goes through an os.Root of the mount it lands in (or of the extraction
// directory), so a container racing to swap a directory for a symlink
// cannot redirect it outside either. It does not lock containers, mount
// or unmount anything, or map user namespaces.
package ctrfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/berthvm/berth/guestagent/engine"
)

// Mount is a bind mount or volume of the container.
type Mount struct {
	Source      string // the host directory or file
	Destination string // the path in the container
	ReadOnly    bool
}

// FS is a container's filesystem.
type FS struct {
	Root         string // the container's root filesystem on the host
	ReadOnlyRoot bool
	Mounts       []Mount
}

// maxSymlinks bounds the symlinks followed resolving one path, as Linux's
// MAXSYMLINKS does.
const maxSymlinks = 40

// view is an FS opened for one operation: the os.Root of each mount,
// opened on first use.
type view struct {
	f      FS
	mounts []mountPoint // f.Mounts cleaned; index -1 is the root filesystem
	roots  map[int]mountRoot
	// confine, when set, holds the directory being extracted into:
	// paths of its mount beneath it are opened through it, so they
	// cannot leave it even if the container swaps a directory for a
	// symlink meanwhile.
	confine *confined
}

type mountPoint struct {
	Mount
	dest string // cleaned absolute destination
}

type mountRoot struct {
	r   *os.Root
	top string
}

type confined struct {
	cpath string
	m     int
	root  *os.Root
}

func (f FS) open() *view {
	v := &view{f: f, roots: map[int]mountRoot{}}
	for _, m := range f.Mounts {
		v.mounts = append(v.mounts, mountPoint{Mount: m, dest: path.Clean("/" + m.Destination)})
	}
	return v
}

func (v *view) close() {
	for _, r := range v.roots {
		r.r.Close()
	}
	if v.confine != nil {
		v.confine.root.Close()
	}
}

// mountOf returns the mount holding the container path p (-1: the root
// filesystem) and p relative to that mount's destination ("" at it). A
// later mount on the same destination hides an earlier one, as in the
// kernel.
func (v *view) mountOf(p string) (int, string) {
	best, bestLen := -1, 0
	for i, m := range v.mounts {
		if !within(p, m.dest) {
			continue
		}
		if l := len(m.dest); l >= bestLen {
			best, bestLen = i, l
		}
	}
	if best < 0 {
		return -1, strings.TrimPrefix(p, "/")
	}
	return best, strings.TrimPrefix(strings.TrimPrefix(p, v.mounts[best].dest), "/")
}

// isMountPoint reports whether p is a mount's destination.
func (v *view) isMountPoint(p string) bool {
	for _, m := range v.mounts {
		if m.dest == p {
			return true
		}
	}
	return false
}

// within reports whether the clean absolute path p is dir or beneath it.
func within(p, dir string) bool {
	return dir == "/" || p == dir || strings.HasPrefix(p, dir+"/")
}

// root returns the os.Root of mount m (-1: the root filesystem) and the
// name of the mount's top in it: "." for a directory, the file's name
// for a mounted file (its root is then the file's directory).
func (v *view) root(m int) (*os.Root, string, error) {
	if r, ok := v.roots[m]; ok {
		return r.r, r.top, nil
	}
	src, top := v.f.Root, "."
	if m >= 0 {
		src = v.mounts[m].Source
		// A host path the engine chose: resolving its symlinks is safe,
		// and a mounted file must be reached by its real name.
		if real, err := filepath.EvalSymlinks(src); err == nil {
			src = real
		}
		if fi, err := os.Stat(src); err == nil && !fi.IsDir() {
			src, top = filepath.Dir(src), filepath.Base(src)
		}
	}
	r, err := os.OpenRoot(src)
	if err != nil {
		return nil, "", fmt.Errorf("opening %s: %w", src, err)
	}
	v.roots[m] = mountRoot{r, top}
	return r, top, nil
}

// locate returns the os.Root to reach the container path p through, and
// p's name in it.
func (v *view) locate(p string) (*os.Root, string, error) {
	m, rel := v.mountOf(p)
	if c := v.confine; c != nil && c.m == m && within(p, c.cpath) {
		r := strings.TrimPrefix(strings.TrimPrefix(p, c.cpath), "/")
		if r == "" {
			r = "."
		}
		return c.root, r, nil
	}
	r, top, err := v.root(m)
	if err != nil {
		return nil, "", err
	}
	if rel == "" {
		return r, top, nil
	}
	if top != "." {
		// Below a mounted file: nothing is there.
		return nil, "", &fs.PathError{Op: "lstat", Path: p, Err: syscall.ENOTDIR}
	}
	return r, rel, nil
}

func (v *view) lstat(p string) (fs.FileInfo, error) {
	r, name, err := v.locate(p)
	if err != nil {
		return nil, err
	}
	return r.Lstat(name)
}

func (v *view) readlink(p string) (string, error) {
	r, name, err := v.locate(p)
	if err != nil {
		return "", err
	}
	return r.Readlink(name)
}

// resolveOpts tunes resolve.
type resolveOpts struct {
	followFinal bool
	// mkdir, when set, is called to create each missing directory on the
	// way (not the final component); it may refuse.
	mkdir func(p string) error
}

// errLoop is ELOOP as resolve reports it.
var errLoop = errors.New("too many levels of symbolic links")

// resolve resolves the container path p as the kernel would inside the
// container: ".." never goes above "/", absolute symlinks start again at
// the container's "/", mounts hide what is beneath them. It returns the
// resolved path (without symlinks), with exists false when a component
// is missing; the rest is then appended as it is, cleaned, as dockerd's
// FollowSymlinkInScope does for broken links. A non-directory in the
// middle is reported as missing.
func (v *view) resolve(p string, o resolveOpts) (string, bool, error) {
	pending := splitPath(p)
	cur := "/"
	links := 0
	for len(pending) > 0 {
		c := pending[0]
		pending = pending[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			cur = path.Dir(cur)
			continue
		}
		next := path.Join(cur, c)
		last := len(pending) == 0
		fi, err := v.lstat(next)
		if err != nil {
			if isNotExist(err) && o.mkdir != nil && !last {
				if err := o.mkdir(next); err != nil {
					return "", false, err
				}
				cur = next
				continue
			}
			if isNotExist(err) {
				return path.Join(append([]string{next}, pending...)...), false, nil
			}
			return "", false, err
		}
		if fi.Mode()&fs.ModeSymlink != 0 && (!last || o.followFinal) {
			links++
			if links > maxSymlinks {
				return "", false, errLoop
			}
			target, err := v.readlink(next)
			if err != nil {
				return "", false, err
			}
			if path.IsAbs(target) {
				cur = "/"
			}
			pending = append(splitPath(target), pending...)
			continue
		}
		if !last && !fi.IsDir() {
			return path.Join(append([]string{next}, pending...)...), false, nil
		}
		cur = next
	}
	return cur, true, nil
}

func splitPath(p string) []string {
	return strings.Split(p, "/")
}

func isNotExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// cleanPath makes a request's path absolute and clean, keeping what
// dockerd keeps (archive.PreserveTrailingDotOrSeparator): a trailing "/"
// or "/." asks for a directory, and "/." for its contents.
func cleanPath(p string) string {
	c := path.Clean("/" + p)
	switch {
	case c == "/":
		return c
	case strings.HasSuffix(p, "/.") || p == ".":
		return c + "/."
	case strings.HasSuffix(p, "/"):
		return c + "/"
	}
	return c
}

// trailing reports whether a cleanPath result ends in "/" or "/.".
func trailing(p string) bool {
	return p != "/" && (strings.HasSuffix(p, "/") || strings.HasSuffix(p, "/."))
}

func notFound(p string) error {
	return engine.WithKind(engine.ErrNotFound, fmt.Sprintf("could not find the file %s in container", p))
}

// stat resolves a request's path like dockerd's Lstat in the container:
// the final symlink is kept, unless the path ends in "/" or "/.". It
// returns the resolved container path and what is there.
func (v *view) stat(req string) (string, fs.FileInfo, error) {
	p := cleanPath(req)
	resolved, ok, err := v.resolve(p, resolveOpts{followFinal: trailing(p)})
	if errors.Is(err, errLoop) {
		return "", nil, engine.WithKind(engine.ErrInvalid, fmt.Sprintf("stat %s: %v", req, err))
	}
	if err != nil {
		return "", nil, fmt.Errorf("stat %s: %w", req, err)
	}
	if !ok {
		return "", nil, notFound(req)
	}
	fi, err := v.lstat(resolved)
	if isNotExist(err) {
		return "", nil, notFound(req)
	}
	if err != nil {
		return "", nil, fmt.Errorf("stat %s: %w", req, err)
	}
	if trailing(p) && !fi.IsDir() {
		return "", nil, notFound(req)
	}
	return resolved, fi, nil
}
