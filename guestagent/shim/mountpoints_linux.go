package shim

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// makeMountPoints creates, as host root, the missing mount points of a
// user-namespaced container in its mounted rootfs: its remapped root
// cannot create them in the image's directories, which host root owns
// (/etc/hosts in /etc, a volume's directory). Mounts under /proc, /sys
// and /dev land on the container's own mounts and are left to the
// runtime. Paths resolve inside the rootfs, so a symlink in the image
// cannot lead to the guest's files.
func makeMountPoints(rootfs string, mounts []specs.Mount) error {
	for _, m := range mounts {
		dst := path.Clean("/" + m.Destination)
		if dst == "/" || under(dst, "/proc") || under(dst, "/sys") || under(dst, "/dev") {
			continue
		}
		p, err := securejoin.SecureJoin(rootfs, dst)
		if err != nil {
			return fmt.Errorf("resolving mount point %s: %w", dst, err)
		}
		if _, err := os.Lstat(p); err == nil {
			continue
		}
		file := false
		if m.Type == "bind" {
			if fi, err := os.Stat(m.Source); err == nil && !fi.IsDir() {
				file = true
			}
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("making mount point %s: %w", dst, err)
		}
		if file {
			f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY|unix.O_NOFOLLOW, 0o644)
			if err != nil && !errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("making mount point %s: %w", dst, err)
			}
			if err == nil {
				f.Close()
			}
			continue
		}
		if err := os.Mkdir(p, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("making mount point %s: %w", dst, err)
		}
	}
	return nil
}

// under reports whether p is strictly inside dir.
func under(p, dir string) bool { return strings.HasPrefix(p, dir+"/") }
