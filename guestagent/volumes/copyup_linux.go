package volumes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// copyTree copies the content of the directory src into the empty
// directory dst, working on directory descriptors and never following a
// symlink on either side, so neither tree can redirect the copy. It
// reports whether src had anything to copy; a dst that is not empty is
// left alone.
func copyTree(ctx context.Context, src, dst string) (bool, error) {
	sfd, err := unix.Open(src, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
		return false, nil
	}
	if err != nil {
		return false, &os.PathError{Op: "open", Path: src, Err: err}
	}
	sdir := os.NewFile(uintptr(sfd), src)
	defer sdir.Close()
	dfd, err := unix.Open(dst, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, &os.PathError{Op: "open", Path: dst, Err: err}
	}
	ddir := os.NewFile(uintptr(dfd), dst)
	defer ddir.Close()

	if names, err := ddir.Readdirnames(1); len(names) > 0 {
		return false, nil
	} else if err != nil && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("reading %s: %w", dst, err)
	}
	names, err := sdir.Readdirnames(-1)
	if err != nil {
		return false, fmt.Errorf("reading %s: %w", src, err)
	}
	c := copier{ctx: ctx, root: os.Geteuid() == 0}
	if err := c.dirContents(sdir, ddir, src, names); err != nil {
		return false, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(sfd, &st); err != nil {
		return false, &os.PathError{Op: "stat", Path: src, Err: err}
	}
	c.attrs(sdir, ddir, &st)
	// dst is the store's own directory: its path is as safe as its fd.
	c.times(unix.AT_FDCWD, dst, &st)
	return len(names) > 0, nil
}

type copier struct {
	ctx  context.Context
	root bool // ownership can be set
}

// dirContents copies the entries names of sdir into ddir.
func (c copier) dirContents(sdir, ddir *os.File, spath string, names []string) error {
	sfd, dfd := int(sdir.Fd()), int(ddir.Fd())
	for _, name := range names {
		if err := c.ctx.Err(); err != nil {
			return err
		}
		p := spath + "/" + name
		var st unix.Stat_t
		if err := unix.Fstatat(sfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			return &os.PathError{Op: "stat", Path: p, Err: err}
		}
		var err error
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			err = c.dir(sfd, dfd, name, p, &st)
		case unix.S_IFREG:
			err = c.file(sfd, dfd, name, p, &st)
		case unix.S_IFLNK:
			err = c.symlink(sfd, dfd, name, p, &st)
		case unix.S_IFIFO:
			err = c.fifo(dfd, name, p, &st)
		default:
			// Device nodes and sockets do not belong in a volume.
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (c copier) dir(sfd, dfd int, name, p string, st *unix.Stat_t) error {
	if err := unix.Mkdirat(dfd, name, 0o700); err != nil {
		return &os.PathError{Op: "mkdir", Path: p, Err: err}
	}
	s, err := openAt(sfd, name, unix.O_RDONLY|unix.O_DIRECTORY, p)
	if err != nil {
		return err
	}
	defer s.Close()
	d, err := openAt(dfd, name, unix.O_RDONLY|unix.O_DIRECTORY, p)
	if err != nil {
		return err
	}
	defer d.Close()
	names, err := s.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("reading %s: %w", p, err)
	}
	if err := c.dirContents(s, d, p, names); err != nil {
		return err
	}
	c.attrs(s, d, st)
	c.times(dfd, name, st)
	return nil
}

func (c copier) file(sfd, dfd int, name, p string, st *unix.Stat_t) error {
	s, err := openAt(sfd, name, unix.O_RDONLY, p)
	if err != nil {
		return err
	}
	defer s.Close()
	d, err := openAt(dfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, p)
	if err != nil {
		return err
	}
	defer d.Close()
	if _, err := io.Copy(d, s); err != nil {
		return fmt.Errorf("copying %s: %w", p, err)
	}
	c.attrs(s, d, st)
	if err := d.Close(); err != nil {
		return fmt.Errorf("copying %s: %w", p, err)
	}
	c.times(dfd, name, st)
	return nil
}

func (c copier) symlink(sfd, dfd int, name, p string, st *unix.Stat_t) error {
	buf := make([]byte, st.Size+1)
	for {
		n, err := unix.Readlinkat(sfd, name, buf)
		if err != nil {
			return &os.PathError{Op: "readlink", Path: p, Err: err}
		}
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	if err := unix.Symlinkat(string(buf), dfd, name); err != nil {
		return &os.PathError{Op: "symlink", Path: p, Err: err}
	}
	if c.root {
		unix.Fchownat(dfd, name, int(st.Uid), int(st.Gid), unix.AT_SYMLINK_NOFOLLOW)
	}
	c.times(dfd, name, st)
	return nil
}

func (c copier) fifo(dfd int, name, p string, st *unix.Stat_t) error {
	if err := unix.Mkfifoat(dfd, name, 0o600); err != nil {
		return &os.PathError{Op: "mkfifo", Path: p, Err: err}
	}
	if c.root {
		unix.Fchownat(dfd, name, int(st.Uid), int(st.Gid), unix.AT_SYMLINK_NOFOLLOW)
	}
	// The fifo is the one just made, so following the name is safe.
	unix.Fchmodat(dfd, name, st.Mode&0o7777, 0)
	c.times(dfd, name, st)
	return nil
}

// attrs gives d the owner, mode and xattrs of s, best effort: chown
// needs root, and a file system may refuse some xattrs.
func (c copier) attrs(s, d *os.File, st *unix.Stat_t) {
	dfd := int(d.Fd())
	if c.root {
		unix.Fchown(dfd, int(st.Uid), int(st.Gid))
	}
	// After chown, which clears the set-id bits.
	unix.Fchmod(dfd, st.Mode&0o7777)
	copyXattrs(int(s.Fd()), dfd)
}

func copyXattrs(sfd, dfd int) {
	sz, err := unix.Flistxattr(sfd, nil)
	if err != nil || sz <= 0 {
		return
	}
	list := make([]byte, sz)
	if sz, err = unix.Flistxattr(sfd, list); err != nil {
		return
	}
	for _, key := range splitNUL(list[:sz]) {
		n, err := unix.Fgetxattr(sfd, key, nil)
		if err != nil {
			continue
		}
		val := make([]byte, n)
		if n, err = unix.Fgetxattr(sfd, key, val); err != nil {
			continue
		}
		unix.Fsetxattr(dfd, key, val[:n], 0)
	}
}

func splitNUL(b []byte) []string {
	var out []string
	start := 0
	for i, c := range b {
		if c == 0 {
			if i > start {
				out = append(out, string(b[start:i]))
			}
			start = i + 1
		}
	}
	return out
}

// times gives name in dfd the access and modification times of st,
// after its content is complete (adding entries changes a dir's mtime).
func (c copier) times(dfd int, name string, st *unix.Stat_t) {
	unix.UtimesNanoAt(dfd, name, []unix.Timespec{st.Atim, st.Mtim}, unix.AT_SYMLINK_NOFOLLOW)
}

// openAt opens name in dirfd without following a symlink.
func openAt(dirfd int, name string, flags int, p string) (*os.File, error) {
	fd, err := unix.Openat(dirfd, name, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: p, Err: err}
	}
	return os.NewFile(uintptr(fd), p), nil
}
