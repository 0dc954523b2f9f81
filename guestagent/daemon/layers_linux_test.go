package daemon

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func write(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLayeredPath(t *testing.T) {
	root := t.TempDir()
	upper, mid, low := filepath.Join(root, "upper"), filepath.Join(root, "mid"), filepath.Join(root, "low")
	for _, d := range []string{upper, mid, low} {
		os.MkdirAll(d, 0o755)
	}
	write(t, filepath.Join(low, "etc/passwd"), "low")
	write(t, filepath.Join(low, "etc/group"), "low")
	write(t, filepath.Join(mid, "etc/passwd"), "mid")
	write(t, filepath.Join(low, "opt/old"), "old")
	write(t, filepath.Join(low, "file/x"), "x")
	write(t, filepath.Join(mid, "file"), "a file over a dir")
	os.Symlink("passwd", filepath.Join(mid, "etc/link"))
	layers := []string{upper, mid, low}
	read := layeredReader(layers)
	for p, want := range map[string]string{"/etc/passwd": "mid", "etc/group": "low", "/etc/link": "mid", "/opt/old": "old"} {
		if b, err := read(p); err != nil || string(b) != want {
			t.Errorf("read %s = %q %v, want %q", p, b, err, want)
		}
	}
	if _, err := read("/file/x"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a path under a file of an upper layer: %v", err)
	}
	if _, ok := layeredPath(layers, "/"); ok {
		t.Error("the root was found as a file")
	}

	if os.Geteuid() != 0 {
		t.Skip("whiteouts and opaque dirs need root (mknod, trusted xattrs)")
	}
	if err := unix.Mknod(filepath.Join(upper, "etc"), unix.S_IFCHR, 0); err == nil {
		// A whiteout of /etc hides all of it.
		if _, ok := layeredPath(layers, "/etc/passwd"); ok {
			t.Error("a file under a whiteout dir was found")
		}
		os.Remove(filepath.Join(upper, "etc"))
	} else {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(upper, "etc"), 0o755)
	if err := unix.Mknod(filepath.Join(upper, "etc/group"), unix.S_IFCHR, 0); err != nil {
		t.Fatal(err)
	}
	if _, ok := layeredPath(layers, "/etc/group"); ok {
		t.Error("a whiteout file was found")
	}
	os.MkdirAll(filepath.Join(mid, "opt"), 0o755)
	write(t, filepath.Join(mid, "opt/new"), "new")
	if err := unix.Setxattr(filepath.Join(mid, "opt"), "trusted.overlay.opaque", []byte("y"), 0); err != nil {
		t.Skipf("no trusted xattrs here: %v", err)
	}
	if _, ok := layeredPath(layers, "/opt/old"); ok {
		t.Error("a file under an opaque dir of an upper layer was found")
	}
	if b, err := read("/opt/new"); err != nil || string(b) != "new" {
		t.Errorf("opaque dir's own file: %q %v", b, err)
	}
}

func TestEnsureDir(t *testing.T) {
	root := t.TempDir()
	upper, low := filepath.Join(root, "upper"), filepath.Join(root, "low")
	os.MkdirAll(upper, 0o755)
	os.MkdirAll(filepath.Join(low, "srv"), 0o750)
	os.Chmod(filepath.Join(low, "srv"), 0o750)
	if err := ensureDir([]string{upper, low}, "/srv/app/data", execUser{UID: uint32(os.Getuid()), GID: uint32(os.Getgid())}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(upper, "srv"))
	if err != nil || fi.Mode().Perm() != 0o750 {
		t.Errorf("copied-up parent: %v %v", fi, err)
	}
	if fi, err := os.Stat(filepath.Join(upper, "srv/app/data")); err != nil || !fi.IsDir() {
		t.Errorf("created dir: %v %v", fi, err)
	}
	// Existing in a lower layer: nothing to do.
	if err := ensureDir([]string{filepath.Join(root, "empty"), low}, "/srv", execUser{}); err != nil {
		t.Errorf("existing dir: %v", err)
	}
	write(t, filepath.Join(low, "afile"), "x")
	if err := ensureDir([]string{upper, low}, "/afile/sub", execUser{}); err == nil {
		t.Error("a dir under a file was created")
	}
}
