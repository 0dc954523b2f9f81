package boot

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// LinkVirtioPorts creates /dev/virtio-ports/NAME for every named
// virtio-serial port, the links udev would make: devtmpfs only has
// /dev/vportNpM, and the transport looks its port up by name
// (/dev/virtio-ports/berth.0). It is safe to call again when ports appear
// later.
func LinkVirtioPorts() error {
	return linkVirtioPorts("/sys/class/virtio-ports", "/dev")
}

func linkVirtioPorts(sysClass, dev string) error {
	ents, err := os.ReadDir(sysClass)
	if errors.Is(err, os.ErrNotExist) {
		return nil // no virtio_console, no ports
	}
	if err != nil {
		return fmt.Errorf("listing virtio ports: %w", err)
	}
	var errs []error
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(sysClass, e.Name(), "name"))
		if err != nil {
			continue
		}
		name := strings.TrimSpace(string(b))
		if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
			continue // unnamed (console) ports have no link
		}
		dir := filepath.Join(dev, "virtio-ports")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("creating %s: %w", dir, err)
		}
		link, target := filepath.Join(dir, name), filepath.Join("..", e.Name())
		if cur, err := os.Readlink(link); err == nil && cur == target {
			continue
		}
		_ = os.Remove(link)
		if err := os.Symlink(target, link); err != nil {
			errs = append(errs, fmt.Errorf("linking virtio port %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}
