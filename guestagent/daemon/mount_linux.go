package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// tmpDir under the root holds short-lived mounts.
const tmpDir = ".tmp"

// overlay is an overlay stack to mount: Lowers top-most first, relative to
// Base when they are not absolute (mount options are limited to a page,
// so long stacks need short paths).
type overlay struct {
	Base        string
	Lowers      []string
	Upper, Work string // both empty: a read-only mount of the lowers
}

// mountOverlay mounts o at target. Relative lower paths are resolved
// from o.Base on a thread of its own whose working directory is not
// shared with the rest of the process (unshare(CLONE_FS)); that thread
// then exits with its goroutine.
func mountOverlay(o overlay, target string, readonly bool) error {
	if len(o.Lowers) == 0 {
		return errors.New("mounting an overlay: no lower dirs")
	}
	var data string
	flags := uintptr(0)
	if readonly {
		flags |= unix.MS_RDONLY
	}
	if o.Upper == "" {
		if len(o.Lowers) == 1 {
			// overlayfs needs two lowers without an upper: a bind does.
			src := o.Lowers[0]
			if !filepath.IsAbs(src) {
				src = filepath.Join(o.Base, src)
			}
			if err := unix.Mount(src, target, "", unix.MS_BIND, ""); err != nil {
				return fmt.Errorf("bind-mounting %s: %w", src, err)
			}
			if err := unix.Mount("", target, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
				unix.Unmount(target, unix.MNT_DETACH)
				return fmt.Errorf("making %s read-only: %w", target, err)
			}
			return nil
		}
		data = "lowerdir=" + strings.Join(o.Lowers, ":")
		flags |= unix.MS_RDONLY
	} else {
		data = fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", strings.Join(o.Lowers, ":"), o.Upper, o.Work)
	}
	data += ",index=off,redirect_dir=off"
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Never unlocked: the thread's fs context is its own now, so it
		// must die with this goroutine rather than serve another.
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			errc <- fmt.Errorf("unsharing the working directory: %w", err)
			return
		}
		if o.Base != "" {
			if err := unix.Chdir(o.Base); err != nil {
				errc <- fmt.Errorf("entering %s: %w", o.Base, err)
				return
			}
		}
		if err := unix.Mount("overlay", target, "overlay", flags, data); err != nil {
			errc <- fmt.Errorf("mounting overlay on %s: %w", target, err)
			return
		}
		errc <- nil
	}()
	return <-errc
}

// unmountAll lazily unmounts whatever is mounted at target, however many
// times.
func unmountAll(target string) {
	for range 16 {
		if err := unix.Unmount(target, unix.MNT_DETACH); err != nil {
			return
		}
	}
}

// tempMount makes a mount point under the root's tmp dir and returns it
// with a cleanup that unmounts and removes it.
func (d *Daemon) tempMount(o overlay, readonly bool) (string, func(), error) {
	base := filepath.Join(d.root, tmpDir)
	if err := os.MkdirAll(base, 0o700); err != nil {
		return "", nil, err
	}
	dir, err := os.MkdirTemp(base, "mnt-")
	if err != nil {
		return "", nil, err
	}
	if err := mountOverlay(o, dir, readonly); err != nil {
		os.Remove(dir)
		return "", nil, err
	}
	return dir, func() {
		unmountAll(dir)
		os.Remove(dir)
	}, nil
}

// isMountPoint reports whether p is on another device than its parent.
func isMountPoint(p string) bool {
	var st, parent unix.Stat_t
	if unix.Lstat(p, &st) != nil || unix.Lstat(filepath.Dir(p), &parent) != nil {
		return false
	}
	return st.Dev != parent.Dev
}

// cleanTmp removes the temporary mounts a killed engine left: each is
// unmounted before its (then empty) mount point is removed, never
// deleted through.
func cleanTmp(dir string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		unmountAll(p)
		os.Remove(p)
	}
}

// removeContainerDir deletes a container's directory, unmounting its root
// filesystem first so nothing is deleted through the mount.
func removeContainerDir(dir string) error {
	rootfs := filepath.Join(dir, rootfsDir)
	unmountAll(rootfs)
	if isMountPoint(rootfs) {
		return fmt.Errorf("removing %s: its root filesystem is still mounted", dir)
	}
	err := os.RemoveAll(dir)
	if err != nil {
		// Directories without write permission (a copied image dir).
		filepath.WalkDir(dir, func(p string, e os.DirEntry, werr error) error {
			if werr == nil && e.IsDir() {
				os.Chmod(p, 0o700)
			}
			return nil
		})
		err = os.RemoveAll(dir)
	}
	return err
}
