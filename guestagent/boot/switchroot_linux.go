package boot

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// switchedEnv marks the agent that was re-executed on the tmpfs root, like
// switch_root's new init. It is removed from the environment right away so
// that no child inherits it.
const switchedEnv = "BERTH_SWITCHED_ROOT"

// newRootDir is where the tmpfs is prepared before it moves over /.
const newRootDir = "/.berth-newroot"

// rootIsInitramfs tells whether / is the kernel's initial rootfs, which
// pivot_root refuses. statfs alone cannot tell it from a tmpfs root, so
// the mount table has the last word: rootfs shows as type "rootfs".
func rootIsInitramfs() (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs("/", &st); err != nil {
		return false, fmt.Errorf("statfs /: %w", err)
	}
	if st.Type != unix.RAMFS_MAGIC && st.Type != unix.TMPFS_MAGIC {
		return false, nil
	}
	b, err := os.ReadFile("/proc/mounts")
	if err != nil {
		return false, fmt.Errorf("reading /proc/mounts: %w", err)
	}
	return rootFstype(string(b)) == "rootfs", nil
}

// rootFstype returns the type of the mount at / that is visible, the last
// one listed for "/" in /proc/mounts.
func rootFstype(mounts string) string {
	fstype := ""
	for _, line := range strings.Split(mounts, "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[1] == "/" {
			fstype = f[2]
		}
	}
	return fstype
}

// switchRoot moves the initramfs contents to a fresh tmpfs, makes that
// tmpfs the root and re-executes the agent there. It only returns on
// error. /proc must be mounted; it is detached before the move.
func switchRoot(log *slog.Logger) error {
	start := time.Now()
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding own executable: %w", err)
	}
	if err := os.MkdirAll(newRootDir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", newRootDir, err)
	}
	if err := unix.Mount("tmpfs", newRootDir, "tmpfs", 0, "mode=0755"); err != nil {
		return fmt.Errorf("mounting tmpfs on %s: %w", newRootDir, err)
	}
	stats, err := moveTree("/", newRootDir, map[string]bool{newRootDir: true, "/proc": true})
	if err != nil {
		return fmt.Errorf("copying the initramfs to tmpfs: %w", err)
	}
	copied := time.Since(start)
	for _, d := range []string{"proc", "sys", "dev", "run", "tmp"} {
		if err := os.MkdirAll(filepath.Join(newRootDir, d), 0o755); err != nil {
			return fmt.Errorf("creating /%s on the new root: %w", d, err)
		}
	}
	if err := unix.Unmount("/proc", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detaching /proc: %w", err)
	}
	if err := unix.Chdir(newRootDir); err != nil {
		return fmt.Errorf("entering the new root: %w", err)
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("moving the new root over /: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot into the new root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("chdir /: %w", err)
	}
	// The old root's directory for newRootDir is now hidden under the new
	// root; the one the copy made (empty) can go.
	_ = os.Remove(newRootDir)
	log.Info("left the initramfs", "files", stats.files, "bytes", stats.bytes,
		"copy", copied.Round(time.Millisecond), "total", time.Since(start).Round(time.Millisecond))

	// The copy has the same path as the running binary, whose old inode
	// was unlinked with the rest of the initramfs.
	exe = strings.TrimSuffix(exe, " (deleted)")
	env := append(os.Environ(), switchedEnv+"=1")
	if err := unix.Exec(exe, os.Args, env); err != nil {
		return fmt.Errorf("re-executing %s: %w", exe, err)
	}
	return nil
}

type treeStats struct {
	files int
	bytes int64
}

// moveTree copies the tree at src into dst, preserving modes, owners,
// symlinks, device nodes and hard links, and removes each source entry
// once it is copied, so the memory the initramfs held is given back as it
// goes and the peak is one file more than the tree. Paths in skip and
// other mount points are left alone. Ownership and device nodes need root;
// without it they are skipped silently (tests).
func moveTree(src, dst string, skip map[string]bool) (treeStats, error) {
	var rootSt unix.Stat_t
	if err := unix.Lstat(src, &rootSt); err != nil {
		return treeStats{}, fmt.Errorf("lstat %s: %w", src, err)
	}
	m := &mover{rootDev: rootSt.Dev, skip: skip, links: map[[2]uint64]string{}, root: os.Geteuid() == 0}
	err := m.dir(src, dst)
	return m.stats, err
}

type mover struct {
	rootDev uint64
	skip    map[string]bool
	links   map[[2]uint64]string // (dev, ino) of a multiply linked file -> its copy
	root    bool
	stats   treeStats
}

func (m *mover) dir(src, dst string) error {
	f, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("opening %s: %w", src, err)
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return fmt.Errorf("listing %s: %w", src, err)
	}
	for _, name := range names {
		s, d := filepath.Join(src, name), filepath.Join(dst, name)
		if m.skip[s] {
			continue
		}
		if err := m.entry(s, d); err != nil {
			return err
		}
	}
	return nil
}

func (m *mover) entry(src, dst string) error {
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return fmt.Errorf("lstat %s: %w", src, err)
	}
	if st.Dev != m.rootDev {
		return nil // another mount, not part of the initramfs
	}
	mode := st.Mode & 0o7777
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		if err := os.Mkdir(dst, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("creating %s: %w", dst, err)
		}
		if err := m.dir(src, dst); err != nil {
			return err
		}
		if err := m.attrs(dst, &st, mode); err != nil {
			return err
		}
		// Fails (and stays) when a skipped entry or a mount is inside.
		_ = unix.Rmdir(src)
		return nil
	case unix.S_IFLNK:
		target, err := os.Readlink(src)
		if err != nil {
			return fmt.Errorf("reading link %s: %w", src, err)
		}
		if err := os.Symlink(target, dst); err != nil {
			return fmt.Errorf("creating link %s: %w", dst, err)
		}
		if m.root {
			if err := unix.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil {
				return fmt.Errorf("chown %s: %w", dst, err)
			}
		}
	case unix.S_IFREG:
		key := [2]uint64{st.Dev, st.Ino}
		if first, ok := m.links[key]; ok {
			if err := os.Link(first, dst); err != nil {
				return fmt.Errorf("linking %s: %w", dst, err)
			}
			break
		}
		if err := copyFile(src, dst); err != nil {
			return err
		}
		if err := m.attrs(dst, &st, mode); err != nil {
			return err
		}
		if st.Nlink > 1 {
			m.links[key] = dst
		}
		m.stats.bytes += st.Size
	default: // devices, fifos, sockets
		if !m.root {
			return nil
		}
		if err := unix.Mknod(dst, st.Mode, int(st.Rdev)); err != nil {
			return fmt.Errorf("mknod %s: %w", dst, err)
		}
		if err := m.attrs(dst, &st, mode); err != nil {
			return err
		}
	}
	m.stats.files++
	if err := unix.Unlink(src); err != nil {
		return fmt.Errorf("removing %s: %w", src, err)
	}
	return nil
}

// attrs sets owner then mode (chown clears setuid bits) and mtime.
func (m *mover) attrs(path string, st *unix.Stat_t, mode uint32) error {
	if m.root {
		if err := unix.Lchown(path, int(st.Uid), int(st.Gid)); err != nil {
			return fmt.Errorf("chown %s: %w", path, err)
		}
	}
	if err := unix.Chmod(path, mode); err != nil {
		return fmt.Errorf("chmod %s: %w", path, err)
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, path, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("setting times of %s: %w", path, err)
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("opening %s: %w", src, err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("creating %s: %w", dst, err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copying %s: %w", src, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", dst, err)
	}
	return nil
}
