package kernel

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/cavaliergopher/cpio"

	"github.com/berthvm/berth/kernel/initramfs"
	"github.com/berthvm/berth/kernel/modules"
)

// cacheDir returns out/build/<arch>/<sub> of this source tree when an
// earlier "make guest" left it there; tests that need real Debian packages
// use it rather than downloading.
func cacheDir(t *testing.T, arch, sub string) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root, ok := sourceRoot(wd)
	if !ok {
		t.Skip("not in the berth source tree")
	}
	dir := filepath.Join(root, "out", "build", arch, sub)
	if _, err := os.Stat(dir + ".extracted"); err != nil {
		t.Skipf("%s not extracted; run \"make guest-%s\" first", dir, arch)
	}
	return dir
}

// unpack writes an archive's files, dirs and symlinks under dir (device
// nodes are skipped), reading it back with cavaliergopher/cpio.
func unpack(t *testing.T, arc *initramfs.Archive, dir string) {
	t.Helper()
	var buf bytes.Buffer
	if err := arc.Write(&buf, initramfs.None); err != nil {
		t.Fatal(err)
	}
	r := cpio.NewReader(&buf)
	for {
		h, err := r.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, h.Name)
		switch h.Mode &^ cpio.ModePerm &^ 0o7000 {
		case cpio.TypeDir:
			err = os.MkdirAll(p, 0o755)
		case cpio.TypeSymlink:
			err = os.Symlink(h.Linkname, p)
		case cpio.TypeReg:
			var data []byte
			if data, err = io.ReadAll(r); err == nil {
				err = os.WriteFile(p, data, os.FileMode(h.Mode.Perm()))
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestStagerSymlinks(t *testing.T) {
	root := t.TempDir()
	write := func(p, data string) {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(data), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	link := func(p, target string) {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, full); err != nil {
			t.Fatal(err)
		}
	}
	write("lib/x86_64-linux-gnu/libfoo.so.1.2.3", "foo")
	link("lib/x86_64-linux-gnu/libfoo.so.1", "libfoo.so.1.2.3")
	link("lib64/ld.so", "/lib/x86_64-linux-gnu/libfoo.so.1") // absolute: resolved in the tree
	write("usr/lib/x86_64-linux-gnu/libbar.so.2", "bar")
	link("loop/a", "b")
	link("loop/b", "a")
	link("dangling", "nowhere")

	a, _ := LookupArch("x86_64")
	for _, tc := range []struct {
		name      string
		path      string
		wantFinal string
		wantLinks map[string]string
		wantErr   string
	}{
		{name: "chain", path: "/lib64/ld.so", wantFinal: "/lib/x86_64-linux-gnu/libfoo.so.1.2.3",
			wantLinks: map[string]string{"lib64/ld.so": "/lib/x86_64-linux-gnu/libfoo.so.1", "lib/x86_64-linux-gnu/libfoo.so.1": "libfoo.so.1.2.3"}},
		{name: "plain file", path: "/usr/lib/x86_64-linux-gnu/libbar.so.2", wantFinal: "/usr/lib/x86_64-linux-gnu/libbar.so.2"},
		{name: "loop", path: "/loop/a", wantErr: "too many levels"},
		{name: "dangling", path: "/dangling", wantErr: "not in the extracted packages"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			arc := initramfs.New()
			s := newStager(root, a, arc)
			final, err := s.add(tc.path)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if final != tc.wantFinal {
				t.Errorf("final = %s, want %s", final, tc.wantFinal)
			}
			if e, ok := arc.Lookup(final); !ok || e.Type != initramfs.Regular || e.Source != filepath.Join(root, final) {
				t.Errorf("final file entry = %+v, %v", e, ok)
			}
			for l, target := range tc.wantLinks {
				if e, ok := arc.Lookup(l); !ok || e.Type != initramfs.Symlink || e.Target != target {
					t.Errorf("link %s = %+v, want -> %s", l, e, target)
				}
			}
			if want := 1 + len(tc.wantLinks); arc.Len() != want {
				t.Errorf("archive has %d entries, want %d", arc.Len(), want)
			}
		})
	}

	s := newStager(root, a, initramfs.New())
	for soname, want := range map[string]string{
		"libfoo.so.1": "/lib/x86_64-linux-gnu/libfoo.so.1",
		"libbar.so.2": "/usr/lib/x86_64-linux-gnu/libbar.so.2",
	} {
		if got, err := s.findLib(soname); err != nil || got != want {
			t.Errorf("findLib(%s) = %s, %v; want %s", soname, got, err, want)
		}
	}
	if _, err := s.findLib("libnope.so.9"); err == nil || !strings.Contains(err.Error(), "no package in") {
		t.Errorf("findLib of a missing library: err = %v", err)
	}
}

func TestApplets(t *testing.T) {
	list, err := parseApplets("bin/sh\nsbin/init\nlinuxrc\nsbin/mke2fs\nusr/bin/[\n\n")
	if err != nil {
		t.Fatal(err)
	}
	arc := initramfs.New()
	if err := arc.AddFile("/sbin/mke2fs", 0o755, "/real/mke2fs"); err != nil {
		t.Fatal(err)
	}
	n, err := stageBusybox(arc, "/src/busybox", list)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("added %d links, want 2 (bin/sh, usr/bin/[)", n)
	}
	for p, want := range map[string]string{"bin/sh": busyboxPath, "usr/bin/[": busyboxPath} {
		if e, ok := arc.Lookup(p); !ok || e.Type != initramfs.Symlink || e.Target != want {
			t.Errorf("%s = %+v", p, e)
		}
	}
	for _, p := range []string{"sbin/init", "linuxrc"} {
		if arc.Has(p) {
			t.Errorf("%s was added", p)
		}
	}
	if e, _ := arc.Lookup("sbin/mke2fs"); e.Type != initramfs.Regular {
		t.Error("real mke2fs was replaced by an applet link")
	}
	for _, bad := range []string{"", "/bin/sh\n", "../etc/x\n", "bin/../../x\n"} {
		if _, err := parseApplets(bad); err == nil {
			t.Errorf("parseApplets(%q) accepted", bad)
		}
	}
}

func TestBaseLayout(t *testing.T) {
	arc := initramfs.New()
	if err := addBase(arc, "/path/to/agent"); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]initramfs.Entry{
		"dev/console":     {Type: initramfs.CharDev, Major: 5, Minor: 1},
		"dev/null":        {Type: initramfs.CharDev, Major: 1, Minor: 3},
		"init":            {Type: initramfs.Regular, Source: "/path/to/agent"},
		"etc/resolv.conf": {Type: initramfs.Symlink, Target: "/run/resolv.conf"},
		"var/lib/berth":   {Type: initramfs.Dir},
		"tmp":             {Type: initramfs.Dir},
	} {
		e, ok := arc.Lookup(p)
		if !ok || e.Type != want.Type || e.Major != want.Major || e.Minor != want.Minor || e.Source != want.Source || e.Target != want.Target {
			t.Errorf("%s = %+v, %v; want %+v", p, e, ok, want)
		}
	}
	if e, _ := arc.Lookup("init"); e.Mode != 0o755 {
		t.Errorf("/init mode %o, want 755", e.Mode)
	}
	if e, _ := arc.Lookup("etc/passwd"); !strings.HasPrefix(string(e.Data), "root:x:0:0:") {
		t.Errorf("/etc/passwd = %q", e.Data)
	}
	if e, _ := arc.Lookup("etc/os-release"); !strings.Contains(string(e.Data), "ID=berth") {
		t.Errorf("/etc/os-release = %q", e.Data)
	}
}

// TestWantsAgainstPinnedKernel checks the module list against the real
// pinned kernel, when a previous build left it extracted.
func TestWantsAgainstPinnedKernel(t *testing.T) {
	for _, a := range Arches() {
		t.Run(a.Name, func(t *testing.T) {
			tree := cacheDir(t, a.Name, "kernel")
			cf, err := os.Open(filepath.Join(tree, "boot", "config-"+a.Release()))
			if err != nil {
				t.Fatal(err)
			}
			defer cf.Close()
			cfg, err := modules.ParseConfig(cf)
			if err != nil {
				t.Fatal(err)
			}
			ix, err := modules.Load(context.Background(), filepath.Join(tree, "lib", "modules", a.Release()))
			if err != nil {
				t.Fatal(err)
			}
			plan, err := ix.Plan(Wants(a), cfg)
			if err != nil {
				t.Fatal(err)
			}
			pos := map[string]int{}
			for i, m := range plan.Load {
				pos[m.Name] = i
			}
			need := []string{"virtio_pci", "virtio_blk", "virtio_net", "virtio_console", "virtio_rng", "vmw_vsock_virtio_transport", "9pnet_virtio", "virtiofs", "ext4", "overlay", "br_netfilter", "nft_masq", "tun", "evdev"}
			// The power button: ACPI's on x86, gpio-keys (on the built-in
			// PL061) on arm64 virt.
			if a.Name == "aarch64" {
				need = append(need, "gpio_keys")
			} else {
				need = append(need, "button")
			}
			for _, name := range need {
				if _, ok := pos[name]; !ok {
					t.Errorf("%s not in the load list", name)
				}
			}
			// Spot-check ordering on real dependencies.
			for _, pair := range [][2]string{{"jbd2", "ext4"}, {"crc32c_generic", "ext4"}, {"bridge", "br_netfilter"}, {"nf_tables", "nft_masq"}, {"fuse", "virtiofs"}, {"vsock", "vmw_vsock_virtio_transport"}} {
				if pos[pair[0]] >= pos[pair[1]] {
					t.Errorf("%s loads at %d, not before %s at %d", pair[0], pos[pair[0]], pair[1], pos[pair[1]])
				}
			}
		})
	}
}

// stagedMke2fs stages mke2fs from the cached userland tree into a fresh
// directory and returns it.
func stagedMke2fs(t *testing.T) string {
	t.Helper()
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skip("runs the amd64 mke2fs")
	}
	tree := cacheDir(t, "x86_64", "userland")
	a, _ := LookupArch("x86_64")
	arc := initramfs.New()
	if err := stageMke2fs(tree, a, arc); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"sbin/mke2fs", "sbin/mkfs.ext4", "etc/mke2fs.conf", "lib64/ld-linux-x86-64.so.2",
		"lib/x86_64-linux-gnu/libc.so.6", "lib/x86_64-linux-gnu/libext2fs.so.2", "usr/lib/x86_64-linux-gnu/libblkid.so.1"} {
		if !arc.Has(p) {
			t.Errorf("staged tree lacks %s", p)
		}
	}
	dir := t.TempDir()
	unpack(t, arc, dir)
	return dir
}

func checkExt4(t *testing.T, img string) {
	t.Helper()
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 0x43a || binary.LittleEndian.Uint16(b[0x438:]) != 0xef53 {
		t.Fatalf("%s has no ext2/3/4 superblock magic", img)
	}
}

// TestMke2fsRunsWithPackagedLoader runs the staged mke2fs through the
// staged loader with the staged libraries first on the search path. No
// root needed; the loader may still fall back to the host's libraries, so
// TestMke2fsRunsInChroot is the strict check.
func TestMke2fsRunsWithPackagedLoader(t *testing.T) {
	dir := stagedMke2fs(t)
	img := filepath.Join(t.TempDir(), "disk.img")
	ld := filepath.Join(dir, "lib", "x86_64-linux-gnu", "ld-linux-x86-64.so.2")
	cmd := exec.Command(ld, "--library-path", filepath.Join(dir, "lib", "x86_64-linux-gnu")+":"+filepath.Join(dir, "usr", "lib", "x86_64-linux-gnu"),
		filepath.Join(dir, "sbin", "mke2fs"), "-q", "-F", "-t", "ext4", img, "16M")
	cmd.Env = []string{"MKE2FS_CONFIG=" + filepath.Join(dir, "etc", "mke2fs.conf")}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("staged mke2fs: %v\n%s", err, out)
	}
	checkExt4(t, img)
}

// TestMke2fsRunsInChroot runs the staged tree the way the guest does: as
// the root filesystem, with the loader and libraries at the paths the
// binary asks for and no ld.so.cache.
func TestMke2fsRunsInChroot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chroot needs root")
	}
	dir := stagedMke2fs(t)
	cmd := exec.Command("chroot", dir, "/sbin/mkfs.ext4", "-q", "-F", "/disk.img", "16M")
	cmd.Env = []string{"PATH=/sbin:/bin"}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mke2fs in chroot: %v\n%s", err, out)
	}
	checkExt4(t, filepath.Join(dir, "disk.img"))
}
