package netctl

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// inNetNS runs fn on an OS thread that has joined the namespace at path.
// The thread is never returned to the Go scheduler (the goroutine exits
// still locked, so the runtime ends the thread): no goroutine can ever run
// by accident in a foreign namespace, even if switching back would fail.
// Sockets opened by fn stay in that namespace after it returns.
func inNetNS(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		ns, err := netns.GetFromPath(path)
		if err != nil {
			errc <- fmt.Errorf("opening network namespace %s: %w", path, err)
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			errc <- fmt.Errorf("entering network namespace %s: %w", path, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// newNetNS creates a network namespace and pins it with a bind mount at
// path (a new file), so it outlives every process in it and can be joined
// by path.
func newNetNS(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
	if err != nil {
		return fmt.Errorf("creating network namespace file: %w", err)
	}
	f.Close()
	errc := make(chan error, 1)
	go func() {
		// As in inNetNS, this thread is discarded afterwards.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unsharing the network namespace: %w", err)
			return
		}
		self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(self, path, "", unix.MS_BIND, ""); err != nil {
			errc <- fmt.Errorf("pinning the network namespace at %s: %w", path, err)
			return
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

// deleteNetNS unpins the namespace at path and removes the file. A path
// that is missing or not mounted is not an error.
func deleteNetNS(path string) error {
	err := unix.Unmount(path, unix.MNT_DETACH)
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmounting network namespace %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing network namespace file: %w", err)
	}
	return nil
}

// isNetNS reports whether path is a pinned namespace (an nsfs mount).
func isNetNS(path string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false
	}
	return st.Type == unix.NSFS_MAGIC
}

// writeSysctl writes a /proc/sys value inside the namespace at nsPath;
// net sysctls belong to the namespace of the thread that opens them.
func writeSysctl(nsPath, key, value string) error {
	return inNetNS(nsPath, func() error {
		if err := os.WriteFile("/proc/sys/"+key, []byte(value), 0o644); err != nil {
			return fmt.Errorf("setting sysctl %s=%s: %w", key, value, err)
		}
		return nil
	})
}

// readSysctl reads a /proc/sys value inside the namespace at nsPath.
func readSysctl(nsPath, key string) (string, error) {
	var out string
	err := inNetNS(nsPath, func() error {
		b, err := os.ReadFile("/proc/sys/" + key)
		if err != nil {
			return fmt.Errorf("reading sysctl %s: %w", key, err)
		}
		out = string(b)
		return nil
	})
	return out, err
}
