package kernel

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// GuestDirEnv names the environment variable that overrides where the
// guest bundle is looked up.
const GuestDirEnv = "BERTH_GUEST_DIR"

// ModulePath is the Go module whose source tree's out/ holds a development
// build of the bundle.
const ModulePath = "github.com/berthvm/berth"

// Bundle file names inside a bundle directory.
const (
	KernelFile = "kernel"
	InitrdFile = "initrd"
)

// Find returns the guest kernel and initrd for arch (x86_64 or aarch64;
// amd64 and arm64 are accepted too). When $BERTH_GUEST_DIR is set it looks
// only there (the files directly there, then under <arch>/). Otherwise it
// looks, in order,
// <dir of the executable>/../share/berth/guest/<arch>/, and in
// out/share/berth/guest/<arch>/ of the berth source tree that contains the
// executable or the working directory.
func Find(arch string) (kernelPath, initrdPath string, err error) {
	exe, err := os.Executable()
	if err != nil {
		exe = ""
	}
	wd, err := os.Getwd()
	if err != nil {
		wd = ""
	}
	return find(arch, os.Getenv(GuestDirEnv), exe, wd)
}

func find(arch, envDir, exe, wd string) (string, string, error) {
	a, err := LookupArch(arch)
	if err != nil {
		return "", "", fmt.Errorf("finding guest bundle: %w", err)
	}
	dirs := candidates(a.Name, envDir, exe, wd)
	for _, d := range dirs {
		k, i := filepath.Join(d, KernelFile), filepath.Join(d, InitrdFile)
		if isFile(k) && isFile(i) {
			return k, i, nil
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "guest kernel and initrd for %s not found; looked in:", a.Name)
	for _, d := range dirs {
		b.WriteString("\n  " + d)
	}
	b.WriteString("\nrun \"make guest\" in the berth source tree, or set " + GuestDirEnv + " to a directory holding them")
	return "", "", errors.New(b.String())
}

// candidates lists the directories to search, in order, without repeats.
func candidates(arch, envDir, exe, wd string) []string {
	var dirs []string
	seen := map[string]bool{}
	add := func(d string) {
		d = filepath.Clean(d)
		if !seen[d] {
			seen[d] = true
			dirs = append(dirs, d)
		}
	}
	if envDir != "" {
		// An explicit choice is never silently ignored: with the variable
		// set, only its directory is searched.
		add(envDir)
		add(filepath.Join(envDir, arch))
		return dirs
	}
	var exeDirs []string
	if exe != "" {
		exeDirs = append(exeDirs, filepath.Dir(exe))
		// An installed binary is often a symlink (Homebrew, /usr/local/bin):
		// the share/ tree sits next to the real file.
		if real, err := filepath.EvalSymlinks(exe); err == nil {
			exeDirs = append(exeDirs, filepath.Dir(real))
		}
	}
	for _, d := range exeDirs {
		add(filepath.Join(d, "..", "share", "berth", "guest", arch))
	}
	starts := exeDirs
	if wd != "" {
		starts = append(starts, wd)
	}
	for _, s := range starts {
		if root, ok := sourceRoot(s); ok {
			add(filepath.Join(root, "out", "share", "berth", "guest", arch))
		}
	}
	return dirs
}

// sourceRoot walks up from dir to the directory whose go.mod declares
// ModulePath.
func sourceRoot(dir string) (string, bool) {
	for d := filepath.Clean(dir); ; {
		if modulePathOf(filepath.Join(d, "go.mod")) == ModulePath {
			return d, true
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", false
		}
		d = parent
	}
}

func modulePathOf(goMod string) string {
	f, err := os.Open(goMod)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module"); ok && rest != "" && (rest[0] == ' ' || rest[0] == '\t') {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}
