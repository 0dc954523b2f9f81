package layer

import (
	"errors"
	"fmt"
	"os"

	"github.com/moby/sys/userns"
	"golang.org/x/sys/unix"
)

// markOpaque sets the overlayfs opaque xattr on dir (relative to dest).
// Root gets trusted.overlay.opaque; without it (or in a user namespace)
// user.overlay.opaque, which overlayfs reads with the userxattr option.
// A dir that a later entry replaced with a non-directory is skipped.
func markOpaque(dest, dir string) error {
	root, err := os.OpenRoot(dest)
	if err != nil {
		return fmt.Errorf("marking %s opaque: %w", dir, err)
	}
	defer root.Close()
	f, err := root.OpenFile(dir, os.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("marking %s opaque: %w", dir, err)
	}
	defer f.Close()
	attr := "trusted.overlay.opaque"
	if os.Geteuid() != 0 || userns.RunningInUserNS() {
		attr = "user.overlay.opaque"
	}
	if err := unix.Fsetxattr(int(f.Fd()), attr, []byte{'y'}, 0); err != nil {
		return fmt.Errorf("marking %s opaque (%s): %w", dir, attr, err)
	}
	return nil
}
