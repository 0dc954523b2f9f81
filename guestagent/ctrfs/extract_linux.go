package ctrfs

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	"github.com/berthvm/berth/guestagent/engine"
	"golang.org/x/sys/unix"
)

// CopyTo extracts the tar r (plain, gzip, bzip2, xz or zstd) into the
// existing directory path (PUT .../archive); a final symlink is followed,
// as in dockerd. Entries land only beneath that directory: a name with
// ".." that leaves it, a relative symlink pointing out of it, a hard
// link to a file out of it, or an entry to be written through a symlink
// that leads out of it stops the extraction with ErrInvalid. Absolute
// names are taken as relative to the directory, as dockerd and tar do.
// Writing into the read-only root filesystem or a read-only mount is
// ErrForbidden. With NoOverwriteDirNonDir, replacing a directory with a
// non-directory or the reverse is ErrConflict. Files get the tar's
// owners with CopyUIDGID, else root's (0:0); owners are set only when
// running as root.
func (f FS) CopyTo(ctx context.Context, p string, r io.Reader, opts engine.CopyToOptions) error {
	v := f.open()
	defer v.close()
	dest, ok, err := v.resolve(cleanPath(p), resolveOpts{followFinal: true})
	if errors.Is(err, errLoop) {
		return engine.WithKind(engine.ErrInvalid, fmt.Sprintf("extracting to %s: %v", p, err))
	}
	if err != nil {
		return fmt.Errorf("extracting to %s: %w", p, err)
	}
	if !ok {
		return notFound(p)
	}
	fi, err := v.lstat(dest)
	if isNotExist(err) {
		return notFound(p)
	}
	if err != nil {
		return fmt.Errorf("extracting to %s: %w", p, err)
	}
	if !fi.IsDir() {
		return engine.WithKind(engine.ErrInvalid, "extraction point is not a directory")
	}
	if err := v.writable(dest); err != nil {
		return err
	}
	mr, name, err := v.locate(dest)
	if err != nil {
		return fmt.Errorf("extracting to %s: %w", p, err)
	}
	droot, err := mr.OpenRoot(name)
	if err != nil {
		return fmt.Errorf("extracting to %s: %w", p, err)
	}
	m, _ := v.mountOf(dest)
	v.confine = &confined{cpath: dest, m: m, root: droot}

	plain, err := decompress(r)
	if err != nil {
		return engine.WithKind(engine.ErrInvalid, fmt.Sprintf("reading the archive: %v", err))
	}
	defer plain.Close()
	x := &extractor{v: v, dest: dest, opts: opts, root: os.Geteuid() == 0}
	tr := tar.NewReader(plain)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return engine.WithKind(engine.ErrInvalid, fmt.Sprintf("reading the archive: %v", err))
		}
		if err := x.entry(hdr, tr); err != nil {
			return err
		}
	}
	return x.finish()
}

// writable refuses paths on a read-only mount or root filesystem, with
// dockerd's words.
func (v *view) writable(p string) error {
	m, _ := v.mountOf(p)
	if m >= 0 {
		if v.mounts[m].ReadOnly {
			return engine.WithKind(engine.ErrForbidden, "mounted volume is marked read-only")
		}
		return nil
	}
	if v.f.ReadOnlyRoot {
		return engine.WithKind(engine.ErrForbidden, "container rootfs is marked read-only")
	}
	return nil
}

type extractor struct {
	v    *view
	dest string // the resolved extraction directory
	opts engine.CopyToOptions
	root bool // owners can be set
	dirs []dirTimes
}

// dirTimes are set once everything is extracted, since adding entries
// to a directory changes its mtime.
type dirTimes struct {
	cp           string
	atime, mtime time.Time
}

func outside(name, dest string) error {
	return engine.WithKind(engine.ErrInvalid, fmt.Sprintf("%q is outside of %q", name, dest))
}

// entry extracts one tar entry.
func (x *extractor) entry(hdr *tar.Header, r io.Reader) error {
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeDir, tar.TypeSymlink, tar.TypeLink, tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
	default:
		return nil // global headers and the like
	}
	// Like dockerd, a leading "/" is dropped and ".." may not leave.
	rel := path.Clean("/" + hdr.Name)[1:]
	if rel == "" {
		rel = "."
	}
	if raw := path.Clean(strings.TrimLeft(hdr.Name, "/")); raw == ".." || strings.HasPrefix(raw, "../") {
		return outside(hdr.Name, x.dest)
	}
	cp := path.Join(x.dest, rel)
	if rel == "." {
		// The extraction directory itself: left as it is, as dockerd
		// does; it cannot become a file.
		if hdr.Typeflag != tar.TypeDir {
			return engine.WithKind(engine.ErrInvalid, fmt.Sprintf("cannot replace %s with a non-directory", cp))
		}
		return nil
	}
	if x.v.isMountPoint(cp) {
		// A mount's top: only a directory entry, which updates its
		// attributes.
		if hdr.Typeflag != tar.TypeDir {
			return engine.WithKind(engine.ErrInvalid, fmt.Sprintf("cannot replace %s with a non-directory", cp))
		}
		if err := x.v.writable(cp); err != nil {
			return err
		}
		return x.dirAttrs(cp, hdr)
	}

	// The parent: resolved in the container, created when missing, and
	// beneath the extraction directory.
	parent, ok, err := x.v.resolve(path.Dir(cp)+"/.", resolveOpts{followFinal: true, mkdir: x.mkdir})
	if errors.Is(err, errLoop) {
		return engine.WithKind(engine.ErrInvalid, fmt.Sprintf("extracting %q: %v", hdr.Name, err))
	}
	if err != nil {
		return err
	}
	if !ok {
		return engine.WithKind(engine.ErrInvalid, fmt.Sprintf("extracting %q: a parent is not a directory", hdr.Name))
	}
	if !within(parent, x.dest) {
		return outside(hdr.Name, x.dest)
	}
	target := path.Join(parent, path.Base(cp))
	if x.v.isMountPoint(target) {
		if hdr.Typeflag != tar.TypeDir {
			return engine.WithKind(engine.ErrInvalid, fmt.Sprintf("cannot replace %s with a non-directory", target))
		}
		if err := x.v.writable(target); err != nil {
			return err
		}
		return x.dirAttrs(target, hdr)
	}
	if err := x.v.writable(target); err != nil {
		return err
	}
	dir, err := x.openDir(parent)
	if err != nil {
		return fmt.Errorf("extracting %q: %w", hdr.Name, err)
	}
	defer dir.Close()
	pfd, base := int(dir.Fd()), path.Base(target)

	var st unix.Stat_t
	if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil {
		isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
		switch {
		case x.opts.NoOverwriteDirNonDir && isDir && hdr.Typeflag != tar.TypeDir:
			return engine.WithKind(engine.ErrConflict, fmt.Sprintf("cannot overwrite directory %q with non-directory %q", target, hdr.Name))
		case x.opts.NoOverwriteDirNonDir && !isDir && hdr.Typeflag == tar.TypeDir:
			return engine.WithKind(engine.ErrConflict, fmt.Sprintf("cannot overwrite non-directory %q with directory %q", target, hdr.Name))
		case isDir && hdr.Typeflag == tar.TypeDir:
			return x.dirAttrs(target, hdr)
		}
		if err := x.remove(target); err != nil {
			return fmt.Errorf("extracting %q: %w", hdr.Name, err)
		}
	} else if !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("extracting %q: %w", hdr.Name, err)
	}

	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := unix.Mkdirat(pfd, base, 0o700); err != nil {
			return fmt.Errorf("extracting %q: %w", hdr.Name, err)
		}
		return x.dirAttrs(target, hdr)
	case tar.TypeReg:
		return x.file(pfd, base, hdr, r)
	case tar.TypeSymlink:
		// dockerd's rule: a relative target may not point out of the
		// extraction directory. An absolute one is the container's
		// business: writing through it is checked like any path.
		if !path.IsAbs(hdr.Linkname) && !within(path.Join(path.Dir(cp), hdr.Linkname), x.dest) {
			return engine.WithKind(engine.ErrInvalid, fmt.Sprintf("invalid symlink %q -> %q", hdr.Name, hdr.Linkname))
		}
		if err := unix.Symlinkat(hdr.Linkname, pfd, base); err != nil {
			return fmt.Errorf("extracting %q: %w", hdr.Name, err)
		}
		x.chown(pfd, base, hdr)
		x.times(pfd, base, hdr)
		return nil
	case tar.TypeLink:
		return x.hardlink(pfd, base, target, hdr)
	default: // char, block, fifo
		mode := uint32(hdr.Mode & 0o7777)
		switch hdr.Typeflag {
		case tar.TypeChar:
			mode |= unix.S_IFCHR
		case tar.TypeBlock:
			mode |= unix.S_IFBLK
		default:
			mode |= unix.S_IFIFO
		}
		dev := int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))
		if err := unix.Mknodat(pfd, base, mode, dev); err != nil {
			if errors.Is(err, unix.EPERM) && hdr.Typeflag != tar.TypeFifo {
				return nil // no device nodes without the right to make them
			}
			return fmt.Errorf("extracting %q: %w", hdr.Name, err)
		}
		x.chown(pfd, base, hdr)
		unix.Fchmodat(pfd, base, uint32(hdr.Mode&0o7777), 0)
		x.times(pfd, base, hdr)
		return nil
	}
}

func (x *extractor) file(pfd int, base string, hdr *tar.Header, r io.Reader) error {
	fd, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("extracting %q: %w", hdr.Name, err)
	}
	f := os.NewFile(uintptr(fd), base)
	defer f.Close()
	if _, err := io.Copy(f, r); err != nil {
		return fmt.Errorf("extracting %q: %w", hdr.Name, err)
	}
	x.attrs(fd, hdr)
	if err := f.Close(); err != nil {
		return fmt.Errorf("extracting %q: %w", hdr.Name, err)
	}
	x.times(pfd, base, hdr)
	return nil
}

// hardlink links target to the file named by hdr.Linkname, which must
// be beneath the extraction directory (relative to it) and on the same
// mount.
func (x *extractor) hardlink(pfd int, base, target string, hdr *tar.Header) error {
	old := path.Join(x.dest, hdr.Linkname)
	if !within(old, x.dest) {
		return engine.WithKind(engine.ErrInvalid, fmt.Sprintf("invalid hardlink %q -> %q", hdr.Name, hdr.Linkname))
	}
	resolved, ok, err := x.v.resolve(old, resolveOpts{})
	if err != nil && !errors.Is(err, errLoop) {
		return fmt.Errorf("extracting %q: %w", hdr.Name, err)
	}
	if err != nil || !ok {
		return engine.WithKind(engine.ErrInvalid, fmt.Sprintf("extracting %q: hard link target %q not found", hdr.Name, hdr.Linkname))
	}
	if !within(resolved, x.dest) {
		return engine.WithKind(engine.ErrInvalid, fmt.Sprintf("invalid hardlink %q -> %q", hdr.Name, hdr.Linkname))
	}
	om, _ := x.v.mountOf(resolved)
	if tm, _ := x.v.mountOf(target); om != tm || x.v.isMountPoint(resolved) {
		return engine.WithKind(engine.ErrInvalid, fmt.Sprintf("extracting %q: cannot hard link across mounts", hdr.Name))
	}
	odir, err := x.openDir(path.Dir(resolved))
	if err != nil {
		return fmt.Errorf("extracting %q: %w", hdr.Name, err)
	}
	defer odir.Close()
	if err := unix.Linkat(int(odir.Fd()), path.Base(resolved), pfd, base, 0); err != nil {
		return fmt.Errorf("extracting %q: %w", hdr.Name, err)
	}
	return nil
}

// mkdir creates a missing parent directory, beneath the extraction
// directory only.
func (x *extractor) mkdir(p string) error {
	if !within(p, x.dest) {
		return outside(p, x.dest)
	}
	if err := x.v.writable(p); err != nil {
		return err
	}
	dir, err := x.openDir(path.Dir(p))
	if err != nil {
		return fmt.Errorf("creating %s: %w", p, err)
	}
	defer dir.Close()
	if err := unix.Mkdirat(int(dir.Fd()), path.Base(p), 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", p, err)
	}
	if x.root {
		unix.Fchownat(int(dir.Fd()), path.Base(p), 0, 0, unix.AT_SYMLINK_NOFOLLOW)
	}
	return nil
}

// openDir opens the directory at the resolved container path p.
func (x *extractor) openDir(p string) (*os.File, error) {
	r, name, err := x.v.locate(p)
	if err != nil {
		return nil, err
	}
	return r.OpenFile(name, os.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
}

// remove deletes what is at the resolved container path p.
func (x *extractor) remove(p string) error {
	r, name, err := x.v.locate(p)
	if err != nil {
		return err
	}
	return r.RemoveAll(name)
}

// dirAttrs sets the attributes of the directory at the resolved path p
// now and its times at the end.
func (x *extractor) dirAttrs(p string, hdr *tar.Header) error {
	d, err := x.openDir(p)
	if err != nil {
		return fmt.Errorf("extracting %q: %w", hdr.Name, err)
	}
	defer d.Close()
	x.attrs(int(d.Fd()), hdr)
	x.dirs = append(x.dirs, dirTimes{cp: p, atime: atime(hdr), mtime: hdr.ModTime})
	return nil
}

// attrs sets the owner, mode and xattrs of an open file or directory.
// Owners need root; xattrs are best effort.
func (x *extractor) attrs(fd int, hdr *tar.Header) {
	if x.root {
		uid, gid := x.owner(hdr)
		unix.Fchown(fd, uid, gid)
	}
	unix.Fchmod(fd, uint32(hdr.Mode&0o7777)) // after chown, which clears set-id bits
	for k, val := range hdr.PAXRecords {
		if key, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
			unix.Fsetxattr(fd, key, []byte(val), 0)
		}
	}
}

func (x *extractor) owner(hdr *tar.Header) (int, int) {
	if x.opts.CopyUIDGID {
		return hdr.Uid, hdr.Gid
	}
	return 0, 0
}

func (x *extractor) chown(pfd int, base string, hdr *tar.Header) {
	if x.root {
		uid, gid := x.owner(hdr)
		unix.Fchownat(pfd, base, uid, gid, unix.AT_SYMLINK_NOFOLLOW)
	}
}

func (x *extractor) times(pfd int, base string, hdr *tar.Header) {
	ts := []unix.Timespec{unix.NsecToTimespec(atime(hdr).UnixNano()), unix.NsecToTimespec(hdr.ModTime.UnixNano())}
	unix.UtimesNanoAt(pfd, base, ts, unix.AT_SYMLINK_NOFOLLOW)
}

func atime(hdr *tar.Header) time.Time {
	if hdr.AccessTime.IsZero() {
		return hdr.ModTime
	}
	return hdr.AccessTime
}

// finish sets the times of the directories, deepest last written first.
func (x *extractor) finish() error {
	for i := len(x.dirs) - 1; i >= 0; i-- {
		d := x.dirs[i]
		dir, err := x.openDir(d.cp)
		if err != nil {
			continue // replaced since
		}
		// utimensat on the open directory itself (futimens): Go's wrapper
		// takes no NULL name, so through /proc, as glibc's futimes does.
		ts := []unix.Timespec{unix.NsecToTimespec(d.atime.UnixNano()), unix.NsecToTimespec(d.mtime.UnixNano())}
		unix.UtimesNanoAt(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", dir.Fd()), ts, 0)
		dir.Close()
	}
	return nil
}
