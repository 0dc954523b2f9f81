package boot

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// newRootDir is where the initramfs is bind-mounted before it moves over /.
const newRootDir = "/.berth-root"

// rootIsInitramfs tells whether / is the kernel's initial rootfs: the one
// mount of the namespace that has no parent, which pivot_root(2) refuses
// as the current root (EINVAL), so containers could not be started. It
// reads /proc/self/mountinfo, where the root mount is its own parent.
func rootIsInitramfs() (bool, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false, fmt.Errorf("reading /proc/self/mountinfo: %w", err)
	}
	root, ok := rootMount(parseMountinfo(string(b)))
	if !ok {
		return false, fmt.Errorf("no mount at / in /proc/self/mountinfo")
	}
	return root.id == root.parent, nil
}

// rootMount returns the mount visible at /, the last one listed there.
func rootMount(entries []mountEntry) (mountEntry, bool) {
	for i := len(entries) - 1; i >= 0; i-- {
		if entries[i].target == "/" {
			return entries[i], true
		}
	}
	return mountEntry{}, false
}

// leaveInitramfs makes / an ordinary mount, one with a parent, so that
// pivot_root works for containers. The initramfs stays where it is: a bind
// mount of it is moved over / and becomes the root. Nothing is copied, the
// agent keeps running from its own file, and the root is still the tmpfs
// the kernel unpacked the initramfs into (half of RAM at most, like any
// tmpfs). /proc must be mounted; it is detached first, as the new root
// gets its own.
func leaveInitramfs() error {
	if err := os.MkdirAll(newRootDir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", newRootDir, err)
	}
	if err := unix.Unmount("/proc", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detaching /proc: %w", err)
	}
	// Not recursive: mounts under the old / stay behind.
	if err := unix.Mount("/", newRootDir, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("binding / on %s: %w", newRootDir, err)
	}
	if err := unix.Chdir(newRootDir); err != nil {
		return fmt.Errorf("entering %s: %w", newRootDir, err)
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("moving the bind mount over /: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot into the new root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("chdir /: %w", err)
	}
	// The bind shows the directory it was mounted on, now a plain one.
	_ = os.Remove(newRootDir)
	return nil
}
