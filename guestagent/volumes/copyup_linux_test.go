package volumes

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/api/types/volume"
	"golang.org/x/sys/unix"
)

// imageTree makes a directory like an image's content at a mount point.
func imageTree(t *testing.T) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "src")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(src, "sub", "deep"), 0o755))
	must(os.WriteFile(filepath.Join(src, "file"), []byte("hello"), 0o640))
	must(os.WriteFile(filepath.Join(src, "sub", "deep", "x"), bytes.Repeat([]byte("x"), 100000), 0o755))
	must(os.Link(filepath.Join(src, "file"), filepath.Join(src, "sub", "hardlink")))
	must(os.Symlink("../file", filepath.Join(src, "sub", "rel")))
	must(os.Symlink("/etc/shadow", filepath.Join(src, "abs")))
	must(unix.Mkfifo(filepath.Join(src, "fifo"), 0o620))
	must(os.Chmod(filepath.Join(src, "sub"), 0o2751))
	must(os.Chmod(src, 0o1777))
	if os.Geteuid() == 0 {
		must(unix.Mknod(filepath.Join(src, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
		must(os.Lchown(filepath.Join(src, "file"), 1234, 5678))
		must(os.Lchown(filepath.Join(src, "abs"), 42, 43))
		must(os.Lchown(filepath.Join(src, "sub"), 7, 8))
		must(os.Lchown(src, 99, 100))
	}
	old := time.Date(2001, 2, 3, 4, 5, 6, 7000, time.UTC)
	for _, p := range []string{"file", "sub/deep/x", "sub/deep", "sub", "fifo", "."} {
		must(os.Chtimes(filepath.Join(src, p), old, old))
	}
	must(unix.Lutimes(filepath.Join(src, "abs"), []unix.Timeval{unix.NsecToTimeval(old.UnixNano()), unix.NsecToTimeval(old.UnixNano())}))
	return src
}

func lstat(t *testing.T, p string) *syscall.Stat_t {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t)
}

func TestCopyUp(t *testing.T) {
	src := imageTree(t)
	s := open(t, t.TempDir())
	m, err := s.Acquire(ctx, "vol", "c1", false)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CopyUp(ctx, "vol", src); err != nil {
		t.Fatal(err)
	}
	dst := m.Path

	if b, err := os.ReadFile(filepath.Join(dst, "file")); err != nil || string(b) != "hello" {
		t.Errorf("file: %q, %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "sub", "deep", "x")); err != nil || len(b) != 100000 {
		t.Errorf("deep file: %d bytes, %v", len(b), err)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "sub", "hardlink")); err != nil || string(b) != "hello" {
		t.Errorf("hard link: %q, %v", b, err)
	}
	for link, want := range map[string]string{"sub/rel": "../file", "abs": "/etc/shadow"} {
		if got, err := os.Readlink(filepath.Join(dst, link)); err != nil || got != want {
			t.Errorf("symlink %s: %q, %v", link, got, err)
		}
	}
	if _, err := os.Lstat(filepath.Join(dst, "null")); !os.IsNotExist(err) {
		t.Errorf("device node copied: %v", err)
	}
	for _, p := range []string{".", "file", "sub", "sub/deep", "sub/deep/x", "fifo", "abs"} {
		ss, ds := lstat(t, filepath.Join(src, p)), lstat(t, filepath.Join(dst, p))
		if ss.Mode != ds.Mode {
			t.Errorf("%s: mode %o, want %o", p, ds.Mode, ss.Mode)
		}
		if ss.Mtim != ds.Mtim {
			t.Errorf("%s: mtime %v, want %v", p, ds.Mtim, ss.Mtim)
		}
		if os.Geteuid() == 0 && (ss.Uid != ds.Uid || ss.Gid != ds.Gid) {
			t.Errorf("%s: owner %d:%d, want %d:%d", p, ds.Uid, ds.Gid, ss.Uid, ss.Gid)
		}
	}

	// Once filled, never again, even when emptied.
	if err := os.RemoveAll(dst); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(dst, 0o755)
	if err := s.CopyUp(ctx, "vol", src); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(dst); len(ents) != 0 {
		t.Errorf("copied twice: %d entries", len(ents))
	}
	// Also after a restart.
	s = open(t, filepath.Dir(filepath.Dir(dst)))
	if err := s.CopyUp(ctx, "vol", src); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(dst); len(ents) != 0 {
		t.Errorf("copied again after reopen: %d entries", len(ents))
	}
}

func TestCopyUpSkips(t *testing.T) {
	src := imageTree(t)
	s := open(t, t.TempDir())

	// A volume with data of its own is not touched, and stays fillable.
	v := mustCreate(t, s, volume.CreateRequest{Name: "busy"})
	writeFile(t, filepath.Join(v.Mountpoint, "mine"), 3)
	if err := s.CopyUp(ctx, "busy", src); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(v.Mountpoint); len(ents) != 1 {
		t.Errorf("copied into a volume with data: %d entries", len(ents))
	}
	os.Remove(filepath.Join(v.Mountpoint, "mine"))
	if err := s.CopyUp(ctx, "busy", src); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(v.Mountpoint, "file")); err != nil {
		t.Errorf("not copied once empty: %v", err)
	}

	// Nothing at the source: no copy, and a later source still fills it.
	v = mustCreate(t, s, volume.CreateRequest{Name: "later"})
	for _, missing := range []string{filepath.Join(src, "nope"), filepath.Join(src, "file"), filepath.Join(src, "abs")} {
		if err := s.CopyUp(ctx, "later", missing); err != nil {
			t.Errorf("CopyUp from %s: %v", missing, err)
		}
	}
	empty := t.TempDir()
	os.Chmod(empty, 0o700)
	if err := s.CopyUp(ctx, "later", empty); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(v.Mountpoint); fi.Mode().Perm() != 0o700 {
		t.Errorf("data dir mode %v, want the empty source's 0700", fi.Mode())
	}
	if err := s.CopyUp(ctx, "later", src); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(v.Mountpoint, "file")); err != nil {
		t.Errorf("not copied after an empty source: %v", err)
	}

	if err := s.CopyUp(ctx, "unknown", src); err == nil {
		t.Errorf("CopyUp of an unknown volume succeeded")
	}
}

// TestCopyUpNoFollow checks that a symlinked directory in the source is
// copied as a link, not walked.
func TestCopyUpNoFollow(t *testing.T) {
	outside := t.TempDir()
	writeFile(t, filepath.Join(outside, "secret"), 5)
	src := t.TempDir()
	os.Symlink(outside, filepath.Join(src, "dirlink"))
	s := open(t, t.TempDir())
	m, _ := s.Acquire(ctx, "v1", "c", false)
	if err := s.CopyUp(ctx, "v1", src); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(filepath.Join(m.Path, "dirlink")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("dirlink: %v, %v", fi, err)
	}
	// A source that is itself a symlink to a directory copies nothing.
	m2, _ := s.Acquire(ctx, "v2", "c", false)
	if err := s.CopyUp(ctx, "v2", filepath.Join(src, "dirlink")); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(m2.Path); len(ents) != 0 {
		t.Errorf("followed a symlinked source: %d entries", len(ents))
	}
}
