//go:build linux

package ctrfs

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/berthvm/berth/guestagent/engine"
)

// TestCopyToEscapes tries to write outside the extraction directory
// /dst: each must fail with ErrInvalid and leave everything outside /dst
// (and the read-only mount beneath it) untouched.
func TestCopyToEscapes(t *testing.T) {
	tests := []struct {
		name string
		ents []ent
	}{
		{"dotdot", []ent{{name: "../../x", body: "x"}}},
		{"dotdot inside", []ent{{name: "a/../../x", body: "x"}}},
		{"dotdot after slash", []ent{{name: "/../etc/passwd", body: "x"}}},
		{"dotdot dir", []ent{{name: "../newdir/", typ: tar.TypeDir}}},
		{"symlink to / then through it", []ent{{name: "evil", typ: tar.TypeSymlink, link: "/"}, {name: "evil/etc/passwd", body: "pwned"}}},
		{"symlink to / then a dir through it", []ent{{name: "evil", typ: tar.TypeSymlink, link: "/"}, {name: "evil/newdir/", typ: tar.TypeDir}}},
		{"symlink to / then a new dir path through it", []ent{{name: "evil", typ: tar.TypeSymlink, link: "/etc"}, {name: "evil/a/b/c", body: "x"}}},
		{"relative symlink out", []ent{{name: "evil", typ: tar.TypeSymlink, link: "../../../outside"}}},
		{"relative symlink out in a subdir", []ent{{name: "d/evil", typ: tar.TypeSymlink, link: "../../etc"}}},
		{"existing symlink out", []ent{{name: "out/passwd", body: "pwned"}}},
		{"existing relative symlink out", []ent{{name: "up/newfile", body: "pwned"}}},
		{"existing symlink to host outside", []ent{{name: "escape/secret", body: "pwned"}}},
		{"hardlink out", []ent{{name: "hl", typ: tar.TypeLink, link: "../etc/passwd"}}},
		{"hardlink through symlink", []ent{{name: "evil", typ: tar.TypeSymlink, link: "/etc"}, {name: "hl", typ: tar.TypeLink, link: "evil/passwd"}}},
		{"hardlink through existing symlink", []ent{{name: "hl", typ: tar.TypeLink, link: "out/passwd"}}},
		{"symlink chain", []ent{{name: "a", typ: tar.TypeSymlink, link: "b"}, {name: "b", typ: tar.TypeSymlink, link: "/etc"}, {name: "a/x", body: "x"}}},
		{"replace a dir with a symlink out, then write", []ent{{name: "sub", typ: tar.TypeSymlink, link: "/etc"}, {name: "sub/f", body: "x"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBox(t)
			dst := b.root("dst")
			before := snapshot(t, b.base, dst)
			roBefore := snapshot(t, filepath.Join(b.base, "ro"))
			err := b.fs.CopyTo(ctx, "/dst", bytes.NewReader(makeTar(t, tt.ents...)), engine.CopyToOptions{})
			if !errors.Is(err, engine.ErrInvalid) {
				t.Errorf("got %v, want ErrInvalid", err)
			}
			if d := diffSnapshots(before, snapshot(t, b.base, dst)); len(d) > 0 {
				t.Errorf("changed outside /dst: %v", d)
			}
			if d := diffSnapshots(roBefore, snapshot(t, filepath.Join(b.base, "ro"))); len(d) > 0 {
				t.Errorf("changed the read-only mount: %v", d)
			}
		})
	}
}

func TestCopyToAllowed(t *testing.T) {
	b := newBox(t)
	tr := makeTar(t,
		ent{name: "/abs/file", body: "abs"},                         // leading / dropped
		ent{name: "./rel/./x/../file", body: "rel"},                 // cleaned
		ent{name: "inside/in-sub", body: "via symlink"},             // existing symlink to sub
		ent{name: "lnk", typ: tar.TypeSymlink, link: "/etc/passwd"}, // absolute targets may be stored
		ent{name: "rlnk", typ: tar.TypeSymlink, link: "sub/f"},      // relative, inside
		ent{name: "hl", typ: tar.TypeLink, link: "existing"},        // hard link inside
		ent{name: "mode", body: "m", mode: 0o4751},                  // modes kept
		ent{name: "fifo", typ: tar.TypeFifo, mode: 0o600},           // fifos made
		ent{name: "newdir/deep/file", body: "parents made"},         // missing parents
		ent{name: "existing", body: "new content"},                  // replaced
		ent{name: "ro/", typ: tar.TypeDir, mode: 0o755},             // hmm: read-only mount top
	)
	err := b.fs.CopyTo(ctx, "/dst", bytes.NewReader(tr[:len(tr)]), engine.CopyToOptions{})
	if !errors.Is(err, engine.ErrForbidden) {
		t.Errorf("touching the read-only mount: %v, want ErrForbidden", err)
	}
	checks := map[string]string{
		"dst/abs/file": "abs", "dst/rel/file": "rel", "dst/sub/in-sub": "via symlink",
		"dst/mode": "m", "dst/newdir/deep/file": "parents made", "dst/existing": "new content",
	}
	for p, want := range checks {
		if got, err := os.ReadFile(b.root(p)); err != nil || string(got) != want {
			t.Errorf("%s: %q, %v; want %q", p, got, err, want)
		}
	}
	if l, _ := os.Readlink(b.root("dst/lnk")); l != "/etc/passwd" {
		t.Errorf("lnk -> %q", l)
	}
	if l, _ := os.Readlink(b.root("dst/rlnk")); l != "sub/f" {
		t.Errorf("rlnk -> %q", l)
	}
	// The hard link was made before "existing" was replaced.
	if got, _ := os.ReadFile(b.root("dst/hl")); string(got) != "old" {
		t.Errorf("hl: %q", got)
	}
	fi, err := os.Stat(b.root("dst/mode"))
	if err != nil || fi.Mode().Perm() != 0o751 || fi.Mode()&os.ModeSetuid == 0 {
		t.Errorf("mode: %v, %v", fi.Mode(), err)
	}
	if !fi.ModTime().Equal(mtime0) {
		t.Errorf("mtime %v, want %v", fi.ModTime(), mtime0)
	}
	if fi, err := os.Lstat(b.root("dst/fifo")); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		t.Errorf("fifo: %v, %v", fi, err)
	}
	if fi, err := os.Stat(b.root("dst/newdir")); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o755 {
		t.Errorf("created parent: %v, %v", fi, err)
	}
}

func TestCopyToMounts(t *testing.T) {
	b := newBox(t)
	tr := makeTar(t,
		ent{name: "data/", typ: tar.TypeDir, mode: 0o700},
		ent{name: "data/new", body: "into the volume"},
		ent{name: "other/sub/x", body: "other volume"},
	)
	if err := b.fs.CopyTo(ctx, "/", bytes.NewReader(tr), engine.CopyToOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(b.base, "vol", "new")); string(got) != "into the volume" {
		t.Errorf("volume file: %q", got)
	}
	if got, _ := os.ReadFile(filepath.Join(b.base, "other", "sub", "x")); string(got) != "other volume" {
		t.Errorf("other volume file: %q", got)
	}
	if _, err := os.Stat(b.root("data/new")); err == nil {
		t.Errorf("written under the mount point in the root filesystem")
	}
	if fi, _ := os.Stat(filepath.Join(b.base, "vol")); fi.Mode().Perm() != 0o700 {
		t.Errorf("volume top mode %v, want 0700", fi.Mode())
	}
	// The extraction directory itself keeps its attributes, as in dockerd.
	before, _ := os.Stat(b.root("dst"))
	if err := b.fs.CopyTo(ctx, "/dst", bytes.NewReader(makeTar(t, ent{name: "./", typ: tar.TypeDir, mode: 0o700})), engine.CopyToOptions{}); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.Stat(b.root("dst")); after.Mode() != before.Mode() || !after.ModTime().Equal(before.ModTime()) {
		t.Errorf("destination changed: %v %v -> %v %v", before.Mode(), before.ModTime(), after.Mode(), after.ModTime())
	}
	// A mount point cannot be replaced by a file.
	err := b.fs.CopyTo(ctx, "/", bytes.NewReader(makeTar(t, ent{name: "data", body: "x"})), engine.CopyToOptions{})
	if !errors.Is(err, engine.ErrInvalid) {
		t.Errorf("replacing a mount point: %v", err)
	}
	if _, err := os.Stat(filepath.Join(b.base, "vol", "f")); err != nil {
		t.Errorf("volume content gone: %v", err)
	}
	// Nor a file mount, which is read-only here anyway.
	err = b.fs.CopyTo(ctx, "/etc", bytes.NewReader(makeTar(t, ent{name: "hosts", body: "x"})), engine.CopyToOptions{})
	if err == nil {
		t.Errorf("replaced a mounted file")
	}
	// Hard links do not cross mounts.
	err = b.fs.CopyTo(ctx, "/", bytes.NewReader(makeTar(t, ent{name: "data/hl", typ: tar.TypeLink, link: "etc/passwd"})), engine.CopyToOptions{})
	if !errors.Is(err, engine.ErrInvalid) {
		t.Errorf("hard link across mounts: %v", err)
	}
}

func TestCopyToRefusals(t *testing.T) {
	one := makeTar(t, ent{name: "f", body: "x"})
	tests := []struct {
		name string
		fs   func(b box) FS
		path string
		tar  []byte
		opts engine.CopyToOptions
		want error
		msg  string
	}{
		{name: "missing", path: "/nope", tar: one, want: engine.ErrNotFound, msg: "could not find the file /nope in container"},
		{name: "not a dir", path: "/etc/passwd", tar: one, want: engine.ErrInvalid, msg: "extraction point is not a directory"},
		{name: "symlink to a file", path: "/link-abs", tar: one, want: engine.ErrInvalid},
		{name: "read-only root", fs: func(b box) FS { f := b.fs; f.ReadOnlyRoot = true; return f }, path: "/dst", tar: one, want: engine.ErrForbidden, msg: "container rootfs is marked read-only"},
		{name: "read-only root, empty tar", fs: func(b box) FS { f := b.fs; f.ReadOnlyRoot = true; return f }, path: "/dst", tar: makeTar(t), want: engine.ErrForbidden},
		{name: "read-only mount", path: "/dst/ro", tar: one, want: engine.ErrForbidden, msg: "mounted volume is marked read-only"},
		{name: "into read-only mount from above", path: "/dst", tar: makeTar(t, ent{name: "ro/f", body: "x"}), want: engine.ErrForbidden},
		{name: "read-only root, writable mount", fs: func(b box) FS { f := b.fs; f.ReadOnlyRoot = true; return f }, path: "/data", tar: one},
		{name: "dir over file", path: "/dst", tar: makeTar(t, ent{name: "existing/", typ: tar.TypeDir}), opts: engine.CopyToOptions{NoOverwriteDirNonDir: true}, want: engine.ErrConflict},
		{name: "file over dir", path: "/dst", tar: makeTar(t, ent{name: "sub", body: "x"}), opts: engine.CopyToOptions{NoOverwriteDirNonDir: true}, want: engine.ErrConflict},
		{name: "dir over file allowed", path: "/dst", tar: makeTar(t, ent{name: "existing/", typ: tar.TypeDir})},
		{name: "file over dir allowed", path: "/dst", tar: makeTar(t, ent{name: "sub", body: "x"})},
		{name: "garbage", path: "/dst", tar: []byte("this is not a tar archive, not at all, no"), want: engine.ErrInvalid},
		{name: "file as the destination itself", path: "/dst", tar: makeTar(t, ent{name: ".", body: "x"}), want: engine.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBox(t)
			f := b.fs
			if tt.fs != nil {
				f = tt.fs(b)
			}
			err := f.CopyTo(ctx, tt.path, bytes.NewReader(tt.tar), tt.opts)
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, tt.want) || (tt.msg != "" && err.Error() != tt.msg) {
				t.Errorf("got %v, want %v %q", err, tt.want, tt.msg)
			}
		})
	}
}

func TestCopyToReplaces(t *testing.T) {
	b := newBox(t)
	tr := makeTar(t, ent{name: "existing/", typ: tar.TypeDir}, ent{name: "existing/in", body: "in"}, ent{name: "sub", body: "now a file"})
	if err := b.fs.CopyTo(ctx, "/dst", bytes.NewReader(tr), engine.CopyToOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(b.root("dst/existing/in")); string(got) != "in" {
		t.Errorf("dir over file: %q", got)
	}
	if got, _ := os.ReadFile(b.root("dst/sub")); string(got) != "now a file" {
		t.Errorf("file over dir: %q", got)
	}
}

func TestCopyToCompressed(t *testing.T) {
	b := newBox(t)
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(makeTar(t, ent{name: "gz", body: "gzipped"}))
	zw.Close()
	if err := b.fs.CopyTo(ctx, "/dst", &buf, engine.CopyToOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(b.root("dst/gz")); string(got) != "gzipped" {
		t.Errorf("gz: %q", got)
	}
}

func TestCopyToOwners(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to set owners")
	}
	for _, copyIDs := range []bool{false, true} {
		b := newBox(t)
		tr := makeTar(t, ent{name: "d/", typ: tar.TypeDir, uid: 1234}, ent{name: "d/f", body: "x", uid: 1234}, ent{name: "d/l", typ: tar.TypeSymlink, link: "f", uid: 1234})
		if err := b.fs.CopyTo(ctx, "/dst", bytes.NewReader(tr), engine.CopyToOptions{CopyUIDGID: copyIDs}); err != nil {
			t.Fatal(err)
		}
		want := uint32(0)
		if copyIDs {
			want = 1234
		}
		for _, p := range []string{"dst/d", "dst/d/f", "dst/d/l"} {
			fi, err := os.Lstat(b.root(p))
			if err != nil {
				t.Fatal(err)
			}
			st := fi.Sys().(*syscall.Stat_t)
			if st.Uid != want || st.Gid != want {
				t.Errorf("CopyUIDGID=%v %s: owner %d:%d, want %d", copyIDs, p, st.Uid, st.Gid, want)
			}
		}
	}
}
