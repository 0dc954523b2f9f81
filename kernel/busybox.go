package kernel

import (
	"bufio"
	"context"
	"debug/elf"
	"fmt"
	"path"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/berthvm/berth/kernel/initramfs"
)

// busyboxPackage is Debian's statically linked busybox.
const busyboxPackage = "busybox-static"

// busyboxPath is where the binary goes in the guest.
const busyboxPath = "/bin/busybox"

// skipApplets are applets the guest must not get: the guest agent is the
// init, so busybox's init and linuxrc would only mislead.
var skipApplets = map[string]bool{"sbin/init": true, "linuxrc": true}

// fetchBusybox downloads and extracts busybox-static for a and returns the
// binary's path and its applet list (busybox --list-full). The list comes
// from running a busybox of the same version built for this host, which is
// the target's own when the arches match.
func fetchBusybox(ctx context.Context, d *debs, a Arch, workDir string) (bin string, applets []string, err error) {
	deb, err := d.download(ctx, busyboxPackage, "", a.Deb)
	if err != nil {
		return "", nil, err
	}
	dir := filepath.Join(workDir, "busybox")
	if err := d.extract(ctx, dir, deb); err != nil {
		return "", nil, err
	}
	bin = filepath.Join(dir, "bin", "busybox")
	if err := checkStatic(bin, a); err != nil {
		return "", nil, err
	}
	runnable := bin
	if hostDeb := runtime.GOARCH; hostDeb != a.Deb {
		version, err := d.field(ctx, deb, "Version")
		if err != nil {
			return "", nil, err
		}
		hostDebFile, err := d.download(ctx, busyboxPackage, version, hostDeb)
		if err != nil {
			return "", nil, fmt.Errorf("getting a runnable busybox to list applets: %w", err)
		}
		hostDir := filepath.Join(workDir, "busybox-host")
		if err := d.extract(ctx, hostDir, hostDebFile); err != nil {
			return "", nil, err
		}
		runnable = filepath.Join(hostDir, "bin", "busybox")
	}
	out, err := run(ctx, "", runnable, "--list-full")
	if err != nil {
		return "", nil, fmt.Errorf("listing busybox applets with %s: %w: %s", runnable, err, lastLine(out))
	}
	applets, err = parseApplets(out)
	if err != nil {
		return "", nil, err
	}
	return bin, applets, nil
}

// parseApplets checks busybox --list-full output: relative paths such as
// "bin/sh" and "usr/sbin/chroot".
func parseApplets(out string) ([]string, error) {
	var list []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" {
			continue
		}
		if path.IsAbs(l) || path.Clean(l) != l || strings.HasPrefix(l, "..") {
			return nil, fmt.Errorf("unexpected busybox applet path %q", l)
		}
		list = append(list, l)
	}
	if len(list) == 0 {
		return nil, fmt.Errorf("busybox --list-full printed no applets")
	}
	return list, nil
}

// stageBusybox adds the binary and one symlink per applet, leaving alone
// paths that already hold a real tool (mke2fs) and the applets in
// skipApplets. It returns how many links it added.
func stageBusybox(arc *initramfs.Archive, bin string, applets []string) (int, error) {
	if err := arc.AddFile(busyboxPath, 0o755, bin); err != nil {
		return 0, fmt.Errorf("staging busybox: %w", err)
	}
	n := 0
	for _, ap := range applets {
		if skipApplets[ap] || arc.Has(ap) {
			continue
		}
		if err := arc.AddSymlink(ap, busyboxPath); err != nil {
			return 0, fmt.Errorf("staging busybox applet: %w", err)
		}
		n++
	}
	return n, nil
}

// checkStatic checks that file is an ELF executable for a with no program
// interpreter, i.e. it can run in the guest without libraries.
func checkStatic(file string, a Arch) error {
	ef, err := elf.Open(file)
	if err != nil {
		return fmt.Errorf("reading %s: %w", file, err)
	}
	defer ef.Close()
	if ef.Machine != a.Machine {
		return fmt.Errorf("%s is built for %v, not %s", file, ef.Machine, a.Name)
	}
	if ef.Type != elf.ET_EXEC && ef.Type != elf.ET_DYN {
		return fmt.Errorf("%s is not an executable", file)
	}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked; it must be static to run as the guest's /init and tools", file)
		}
	}
	return nil
}
