package kernel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// debs downloads Debian packages with apt-get into a cache directory and
// extracts them with dpkg-deb, reusing earlier results.
type debs struct {
	dir string // cache: <work>/debs
	log *slog.Logger
}

// debFileName is the name apt-get download gives a package file; the
// epoch's ":" is escaped as "%3a".
func debFileName(pkg, version, arch string) string {
	return fmt.Sprintf("%s_%s_%s.deb", pkg, strings.ReplaceAll(version, ":", "%3a"), arch)
}

// errNotOnMirror reports that apt cannot download the requested version.
var errNotOnMirror = errors.New("not available from the apt sources")

// download returns the path of pkg for arch (version "" for the
// candidate), downloading it unless an earlier download is cached.
func (d *debs) download(ctx context.Context, pkg, version, arch string) (string, error) {
	if err := os.MkdirAll(d.dir, 0o755); err != nil {
		return "", fmt.Errorf("creating package cache: %w", err)
	}
	if p, ok := d.cached(pkg, version, arch); ok {
		return p, nil
	}
	spec := pkg + ":" + arch
	if version != "" {
		spec += "=" + version
	}
	d.log.Info("downloading package", "package", spec)
	// Download into a private directory so an interrupted run leaves no
	// half-written .deb where the cache looks.
	tmp, err := os.MkdirTemp(d.dir, ".download-")
	if err != nil {
		return "", fmt.Errorf("creating download directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	// apt drops privileges to _apt, which cannot write here; -o silences
	// the warning about downloading as root instead.
	out, err := run(ctx, tmp, "apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", spec)
	if err != nil {
		if strings.Contains(out, "not found") || strings.Contains(out, "Unable to locate") || strings.Contains(out, "Can't select") {
			return "", fmt.Errorf("downloading %s: %w: %s", spec, errNotOnMirror, aptErrors(out))
		}
		return "", fmt.Errorf("downloading %s (is apt-get installed, and the %s architecture added with dpkg --add-architecture?): %w: %s", spec, arch, err, aptErrors(out))
	}
	got, err := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if err != nil || len(got) != 1 {
		return "", fmt.Errorf("downloading %s: expected one .deb, got %v", spec, got)
	}
	dst := filepath.Join(d.dir, filepath.Base(got[0]))
	if err := os.Rename(got[0], dst); err != nil {
		return "", fmt.Errorf("caching %s: %w", spec, err)
	}
	return dst, nil
}

// cached finds an earlier download. Without a pinned version any cached
// file of the package will do (the newest by name).
func (d *debs) cached(pkg, version, arch string) (string, bool) {
	if version != "" {
		p := filepath.Join(d.dir, debFileName(pkg, version, arch))
		return p, isFile(p)
	}
	m, _ := filepath.Glob(filepath.Join(d.dir, pkg+"_*_"+arch+".deb"))
	if len(m) == 0 {
		return "", false
	}
	sort.Strings(m)
	return m[len(m)-1], true
}

// field reads one control field (Version, Package...) of a .deb.
func (d *debs) field(ctx context.Context, deb, name string) (string, error) {
	out, err := run(ctx, "", "dpkg-deb", "-f", deb, name)
	if err != nil {
		return "", fmt.Errorf("reading %s of %s: %w: %s", name, deb, err, lastLine(out))
	}
	return strings.TrimSpace(out), nil
}

// extract unpacks debFiles, in order, into dir, unless dir already holds
// exactly those packages from an earlier run.
func (d *debs) extract(ctx context.Context, dir string, debFiles ...string) error {
	var names []string
	for _, f := range debFiles {
		names = append(names, filepath.Base(f))
	}
	stampData := strings.Join(names, "\n") + "\n"
	stamp := dir + ".extracted"
	if old, err := os.ReadFile(stamp); err == nil && string(old) == stampData && isDir(dir) {
		return nil
	}
	d.log.Info("extracting packages", "dir", dir, "packages", strings.Join(names, " "))
	if err := os.RemoveAll(stamp); err != nil {
		return fmt.Errorf("removing stale stamp: %w", err)
	}
	tmp := dir + ".tmp"
	for _, p := range []string{tmp, dir} {
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("removing stale extraction: %w", err)
		}
	}
	for _, f := range debFiles {
		if out, err := run(ctx, "", "dpkg-deb", "-x", f, tmp); err != nil {
			return fmt.Errorf("extracting %s: %w: %s", f, err, lastLine(out))
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("moving extracted tree into place: %w", err)
	}
	if err := os.WriteFile(stamp, []byte(stampData), 0o644); err != nil {
		return fmt.Errorf("writing extraction stamp: %w", err)
	}
	return nil
}

// aptPolicyCandidate returns apt-cache policy's candidate version of spec,
// or "" when apt knows no such package.
func aptPolicyCandidate(ctx context.Context, spec string) string {
	out, err := run(ctx, "", "apt-cache", "policy", spec)
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "Candidate:"); ok {
			if v = strings.TrimSpace(v); v != "(none)" {
				return v
			}
		}
	}
	return ""
}

// aptDepends returns the packages spec depends on (apt-cache depends).
func aptDepends(ctx context.Context, spec string) []string {
	out, err := run(ctx, "", "apt-cache", "depends", spec)
	if err != nil {
		return nil
	}
	var deps []string
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "Depends:"); ok {
			deps = append(deps, strings.TrimSpace(v))
		}
	}
	return deps
}

func run(ctx context.Context, dir, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// aptErrors keeps apt's "E:" lines, the ones that say what went wrong.
func aptErrors(out string) string {
	var errs []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "E: ") {
			errs = append(errs, strings.TrimPrefix(l, "E: "))
		}
	}
	if len(errs) == 0 {
		return lastLine(out)
	}
	return strings.Join(errs, "; ")
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}
