//go:build linux

package ctrfs

import (
	"errors"
	"io/fs"
	"testing"

	"github.com/berthvm/berth/guestagent/engine"
)

func TestStat(t *testing.T) {
	b := newBox(t)
	tests := []struct {
		path   string
		name   string
		kind   fs.FileMode // type bits
		size   int64       // -1: not checked
		target string
		err    error
	}{
		{path: "/etc/passwd", name: "passwd", kind: 0, size: 26},
		{path: "etc/passwd", name: "passwd", kind: 0, size: 26},
		{path: "/etc", name: "etc", kind: fs.ModeDir, size: -1},
		{path: "/etc/", name: "etc", kind: fs.ModeDir, size: -1},
		{path: "/etc/.", name: ".", kind: fs.ModeDir, size: -1},
		{path: "/", name: "/", kind: fs.ModeDir, size: -1},
		{path: "", name: "/", kind: fs.ModeDir, size: -1},
		{path: "/link-abs", name: "link-abs", kind: fs.ModeSymlink, size: 11, target: "/etc/passwd"},
		{path: "/lnkdir", name: "lnkdir", kind: fs.ModeSymlink, size: 3, target: "/etc"},
		{path: "/lnkdir/", name: "lnkdir", kind: fs.ModeDir, size: -1},
		{path: "/lnkdir/passwd", name: "passwd", kind: 0, size: 26},
		{path: "/abs/abs/etc/../etc/passwd", name: "passwd", kind: 0, size: 26},
		{path: "/etc/dotdots", name: "dotdots", kind: fs.ModeSymlink, size: -1, target: "/etc/passwd"},
		{path: "/esc", name: "esc", kind: fs.ModeSymlink, size: -1, target: "/outside"},
		{path: "/esc/secret", err: engine.ErrNotFound},
		{path: "/broken", name: "broken", kind: fs.ModeSymlink, size: 7, target: "/nope/x"},
		{path: "/broken/", err: engine.ErrNotFound},
		{path: "/loop1", name: "loop1", kind: fs.ModeSymlink, size: 6, target: "/loop1"},
		{path: "/loop1/", err: engine.ErrInvalid},
		{path: "/data", name: "data", kind: fs.ModeDir, size: -1},
		{path: "/data/f", name: "f", kind: 0, size: 11},
		{path: "/data/hidden", err: engine.ErrNotFound},
		{path: "/data/../etc/passwd", name: "passwd", kind: 0, size: 26},
		{path: "/tovol/sub/g", name: "g", kind: 0, size: 15},
		{path: "/etc/hosts", name: "hosts", kind: 0, size: 20},
		{path: "/etc/hosts/x", err: engine.ErrNotFound},
		{path: "/other/o", name: "o", kind: 0, size: 12},
		{path: "/nope", err: engine.ErrNotFound},
		{path: "/etc/passwd/", err: engine.ErrNotFound},
		{path: "/etc/passwd/x", err: engine.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			st, err := b.fs.Stat(tt.path)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("got %+v, %v; want %v", st, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if st.Name != tt.name || st.Mode.Type() != tt.kind || (tt.size >= 0 && st.Size != tt.size) || st.LinkTarget != tt.target {
				t.Errorf("got %+v; want name %q type %v size %d target %q", st, tt.name, tt.kind, tt.size, tt.target)
			}
			if !st.Mtime.Equal(mtime0) && tt.kind != fs.ModeSymlink {
				t.Errorf("mtime %v, want %v", st.Mtime, mtime0)
			}
		})
	}
	_, err := b.fs.Stat("/nope/x")
	if err == nil || err.Error() != "could not find the file /nope/x in container" {
		t.Errorf("not found message: %v", err)
	}
}
