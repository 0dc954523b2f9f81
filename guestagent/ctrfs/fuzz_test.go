//go:build linux

package ctrfs

import (
	"archive/tar"
	"bytes"
	"path/filepath"
	"testing"

	"github.com/berthvm/berth/guestagent/engine"
)

// FuzzCopyTo extracts arbitrary bytes into /dst: it must never panic nor
// change anything outside /dst or in the read-only mount beneath it,
// whatever the archive holds.
func FuzzCopyTo(f *testing.F) {
	seeds := [][]ent{
		{{name: "../../x", body: "x"}},
		{{name: "evil", typ: tar.TypeSymlink, link: "/"}, {name: "evil/etc/passwd", body: "p"}},
		{{name: "evil", typ: tar.TypeSymlink, link: "../../.."}, {name: "evil/x", body: "p"}},
		{{name: "hl", typ: tar.TypeLink, link: "../etc/passwd"}},
		{{name: "a", typ: tar.TypeSymlink, link: "b"}, {name: "b", typ: tar.TypeSymlink, link: "a"}, {name: "a/x", body: "x"}},
		{{name: "out/x", body: "x"}, {name: "ro/x", body: "x"}, {name: "sub", body: "x"}},
		{{name: "d/", typ: tar.TypeDir}, {name: "d/f", body: "ok"}, {name: "l", typ: tar.TypeLink, link: "d/f"}},
		{{name: "inside", typ: tar.TypeSymlink, link: "/dst/ro"}, {name: "inside/x", body: "x"}},
	}
	for _, s := range seeds {
		f.Add(makeTar(f, s...), false)
	}
	f.Add([]byte("garbage"), true)
	f.Fuzz(func(t *testing.T, data []byte, noOverwrite bool) {
		b := newBox(t)
		dst := b.root("dst")
		ro := filepath.Join(b.base, "ro")
		before := snapshot(t, b.base, dst)
		roBefore := snapshot(t, ro)
		b.fs.CopyTo(ctx, "/dst", bytes.NewReader(data), engine.CopyToOptions{NoOverwriteDirNonDir: noOverwrite})
		if d := diffSnapshots(before, snapshot(t, b.base, dst)); len(d) > 0 {
			t.Fatalf("changed outside /dst: %v", d)
		}
		if d := diffSnapshots(roBefore, snapshot(t, ro)); len(d) > 0 {
			t.Fatalf("changed the read-only mount: %v", d)
		}
	})
}
