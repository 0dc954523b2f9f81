package boot

import (
	"bufio"
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

// modulesList names the bundle's kernel modules, one path per line,
// relative to /lib/modules/<release>/, dependencies first.
const modulesList = "/etc/berth/modules"

// parseModuleList returns the module paths of a load-order list. Blank
// lines and #-comments are skipped; relative paths are resolved against
// dir.
func parseModuleList(r io.Reader, dir string) ([]string, error) {
	var out []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if !filepath.IsAbs(line) {
			line = filepath.Join(dir, line)
		}
		out = append(out, line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading module list: %w", err)
	}
	return out, nil
}

// loadModules loads the modules in the bundle's list with finit_module.
// A module that is built in or loaded already (EEXIST) is fine; any other
// failure is logged and the rest still load, since one missing driver
// should not cost the whole guest. A missing list is not an error.
func loadModules(log *slog.Logger, release string) (loaded int, err error) {
	f, err := os.Open(modulesList)
	if errors.Is(err, os.ErrNotExist) {
		log.Debug("no module list", "path", modulesList)
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("opening module list: %w", err)
	}
	defer f.Close()
	paths, err := parseModuleList(f, filepath.Join("/lib/modules", release))
	if err != nil {
		return 0, err
	}
	for _, p := range paths {
		start := time.Now()
		err := loadModule(p)
		switch {
		case err == nil:
			loaded++
			log.Debug("module loaded", "module", filepath.Base(p), "took", time.Since(start).Round(time.Microsecond))
		case errors.Is(err, unix.EEXIST):
		case errors.Is(err, unix.ENODEV):
			// A driver for hardware this machine lacks, such as
			// crc32c-intel on a CPU without SSE4.2 (QEMU's TCG).
			log.Info("kernel module has no device here", "module", filepath.Base(p))
		default:
			log.Error("loading kernel module", "module", p, "err", err)
		}
	}
	return loaded, nil
}

func loadModule(path string) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening %s: %w", path, err)
	}
	defer unix.Close(fd)
	flags := 0
	switch filepath.Ext(path) {
	case ".xz", ".zst", ".gz":
		// Decompressed by the kernel (5.17+ with the matching option).
		flags |= unix.MODULE_INIT_COMPRESSED_FILE
	}
	if err := unix.FinitModule(fd, "", flags); err != nil {
		return fmt.Errorf("finit_module %s: %w", filepath.Base(path), err)
	}
	return nil
}
