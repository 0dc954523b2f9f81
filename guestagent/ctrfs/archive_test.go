//go:build linux

package ctrfs

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/berthvm/berth/guestagent/engine"
	"github.com/moby/go-archive"
	"github.com/moby/moby/api/types/container"
)

var ctx = context.Background()

func TestCopyFrom(t *testing.T) {
	b := newBox(t)
	tests := []struct {
		path string
		want []string
	}{
		{"/etc/passwd", []string{"passwd 0 root:x:0:0::/root:/bin/sh\n"}},
		{"/link-abs", []string{"link-abs 2 -> /etc/passwd"}},
		{"/lnkdir/passwd", []string{"passwd 0 root:x:0:0::/root:/bin/sh\n"}},
		{"/data", []string{"data/ 5", "data/f 0 volume file", "data/sub/ 5", "data/sub/g 0 volume sub file"}},
		{"/tovol/", []string{"tovol/ 5", "tovol/f 0 volume file", "tovol/sub/ 5", "tovol/sub/g 0 volume sub file"}},
		{"/data/.", []string{"./ 5", "./f 0 volume file", "./sub/ 5", "./sub/g 0 volume sub file"}},
		{"/etc/hosts", []string{"hosts 0 127.0.0.1 localhost\n"}},
		{"/dst/hardlinked", []string{"hardlinked/ 5", "hardlinked/a 0 linked", "hardlinked/b 1 -> hardlinked/a"}},
		{"/dst/", []string{
			"dst/ 5", "dst/escape 2 -> ../../../outside", "dst/existing 0 old",
			"dst/hardlinked/ 5", "dst/hardlinked/a 0 linked", "dst/hardlinked/b 1 -> dst/hardlinked/a",
			"dst/inside 2 -> sub", "dst/out 2 -> /etc", "dst/ro/ 5", "dst/ro/keep 0 read-only",
			"dst/sub/ 5", "dst/sub/f 0 sub file", "dst/up 2 -> ../etc",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			var buf bytes.Buffer
			var st container.PathStat
			called := false
			err := b.fs.CopyFrom(ctx, tt.path, func(s container.PathStat) {
				if buf.Len() != 0 {
					t.Errorf("stat called after writing")
				}
				st, called = s, true
			}, &buf)
			if err != nil {
				t.Fatal(err)
			}
			if want, _ := b.fs.Stat(tt.path); !called || st != want {
				t.Errorf("stat %+v, want %+v", st, want)
			}
			if got := listTar(t, &buf); !slices.Equal(got, tt.want) {
				t.Errorf("got\n%q\nwant\n%q", got, tt.want)
			}
		})
	}

	// The whole root: mounts from their sources, with names as dockerd's.
	var buf bytes.Buffer
	if err := b.fs.CopyFrom(ctx, "/", nil, &buf); err != nil {
		t.Fatal(err)
	}
	got := listTar(t, &buf)
	for _, want := range []string{"/ 5", "/data/f 0 volume file", "/etc/hosts 0 127.0.0.1 localhost\n", "/other/o 0 other volume", "/etc/passwd 0 root:x:0:0::/root:/bin/sh\n"} {
		if !slices.Contains(got, want) {
			t.Errorf("archive of / lacks %q", want)
		}
	}
	for _, unwanted := range []string{"/data/hidden 0 under the mount", "/outside/"} {
		if slices.Contains(got, unwanted) {
			t.Errorf("archive of / has %q", unwanted)
		}
	}

	called := false
	err := b.fs.CopyFrom(ctx, "/nope", func(container.PathStat) { called = true }, io.Discard)
	if !errors.Is(err, engine.ErrNotFound) || called {
		t.Errorf("unknown path: %v, stat called %v", err, called)
	}
}

func TestExport(t *testing.T) {
	b := newBox(t)
	var buf bytes.Buffer
	if err := b.fs.Export(ctx, &buf); err != nil {
		t.Fatal(err)
	}
	got := listTar(t, &buf)
	for _, want := range []string{"bin/ 5", "bin/sh 0 #!binary", "data/ 5", "proc/ 5", "sys/ 5", "dst/ro/ 5", "etc/hosts 0 placeholder\n", "link-abs 2 -> /etc/passwd", "dst/hardlinked/b 1 -> dst/hardlinked/a"} {
		if !slices.Contains(got, want) {
			t.Errorf("export lacks %q", want)
		}
	}
	for _, e := range got {
		for _, prefix := range []string{"/", "./", "data/", "proc/c", "sys/k", "dst/ro/", "other/"} {
			if strings.HasPrefix(e, prefix) && !strings.HasPrefix(e, strings.TrimSuffix(prefix, "/")+"/ 5") {
				t.Errorf("export has %q", e)
			}
		}
	}
}

// TestDockerCLICopyFrom runs the docker CLI's side of `docker cp
// CONTAINER:SRC DST` (go-archive's CopyTo, which cli/command/container/cp.go
// calls) on CopyFrom's output.
func TestDockerCLICopyFrom(t *testing.T) {
	b := newBox(t)
	tests := []struct {
		src, dst string // dst relative to a fresh local dir holding "existing/"
		want     map[string]string
	}{
		{"/data", "new", map[string]string{"new/f": "volume file", "new/sub/g": "volume sub file"}},
		{"/data", "existing", map[string]string{"existing/data/f": "volume file"}},
		{"/data/.", "existing", map[string]string{"existing/f": "volume file", "existing/sub/g": "volume sub file"}},
		{"/etc/passwd", "existing", map[string]string{"existing/passwd": "root:x:0:0::/root:/bin/sh\n"}},
		{"/etc/passwd", "renamed", map[string]string{"renamed": "root:x:0:0::/root:/bin/sh\n"}},
		{"/dst/sub/f", "existing/", map[string]string{"existing/f": "sub file"}},
	}
	for _, tt := range tests {
		t.Run(tt.src+"->"+tt.dst, func(t *testing.T) {
			local := t.TempDir()
			os.Mkdir(filepath.Join(local, "existing"), 0o755)
			var buf bytes.Buffer
			var st container.PathStat
			if err := b.fs.CopyFrom(ctx, tt.src, func(s container.PathStat) { st = s }, &buf); err != nil {
				t.Fatal(err)
			}
			srcInfo := archive.CopyInfo{Path: tt.src, Exists: true, IsDir: st.Mode.IsDir()}
			if err := archive.CopyTo(&buf, srcInfo, filepath.Join(local, tt.dst)); err != nil {
				t.Fatal(err)
			}
			for p, want := range tt.want {
				if got, err := os.ReadFile(filepath.Join(local, p)); err != nil || string(got) != want {
					t.Errorf("%s: %q, %v; want %q", p, got, err, want)
				}
			}
		})
	}
}

// TestDockerCLICopyTo runs the docker CLI's side of `docker cp SRC
// CONTAINER:DST`: stat the destination, tar the source, rebase it with
// go-archive's PrepareArchiveCopy, then CopyTo the directory it picks.
func TestDockerCLICopyTo(t *testing.T) {
	local := t.TempDir()
	os.MkdirAll(filepath.Join(local, "dir", "inner"), 0o755)
	os.WriteFile(filepath.Join(local, "dir", "inner", "x"), []byte("x content"), 0o600)
	os.WriteFile(filepath.Join(local, "file.txt"), []byte("file content"), 0o640)
	tests := []struct {
		src, dst string
		want     map[string]string // container path: content
	}{
		{"dir", "/dst/newdir", map[string]string{"/dst/newdir/inner/x": "x content"}},
		{"dir", "/dst/sub", map[string]string{"/dst/sub/dir/inner/x": "x content"}},
		{"dir/.", "/dst/sub", map[string]string{"/dst/sub/inner/x": "x content"}},
		{"file.txt", "/dst/sub", map[string]string{"/dst/sub/file.txt": "file content"}},
		{"file.txt", "/dst/existing", map[string]string{"/dst/existing": "file content"}},
		{"file.txt", "/dst/renamed.txt", map[string]string{"/dst/renamed.txt": "file content"}},
		{"file.txt", "/dst/inside", map[string]string{"/dst/sub/file.txt": "file content"}},
		{"file.txt", "/data", map[string]string{"/data/file.txt": "file content"}},
		{"dir", "/tovol/sub", map[string]string{"/data/sub/dir/inner/x": "x content"}},
	}
	for _, tt := range tests {
		t.Run(tt.src+"->"+tt.dst, func(t *testing.T) {
			b := newBox(t)
			dstInfo := archive.CopyInfo{Path: tt.dst}
			if st, err := b.fs.Stat(tt.dst); err == nil {
				if st.Mode&os.ModeSymlink != 0 {
					dstInfo.Path = st.LinkTarget
					st, err = b.fs.Stat(st.LinkTarget)
				}
				if err == nil {
					dstInfo.Exists, dstInfo.IsDir = true, st.Mode.IsDir()
				}
			}
			srcPath := filepath.Join(local, tt.src)
			if strings.HasSuffix(tt.src, "/.") {
				srcPath += "/."
			}
			srcInfo, err := archive.CopyInfoSourcePath(srcPath, false)
			if err != nil {
				t.Fatal(err)
			}
			content, err := archive.TarResource(srcInfo)
			if err != nil {
				t.Fatal(err)
			}
			defer content.Close()
			dstDir, prepared, err := archive.PrepareArchiveCopy(content, srcInfo, dstInfo)
			if err != nil {
				t.Fatal(err)
			}
			defer prepared.Close()
			if err := b.fs.CopyTo(ctx, dstDir, prepared, engine.CopyToOptions{}); err != nil {
				t.Fatal(err)
			}
			for p, want := range tt.want {
				var buf bytes.Buffer
				if err := b.fs.CopyFrom(ctx, p, nil, &buf); err != nil {
					t.Errorf("%s: %v", p, err)
					continue
				}
				got := listTar(t, &buf)
				if len(got) != 1 || !strings.HasSuffix(got[0], " 0 "+want) {
					t.Errorf("%s: %q, want content %q", p, got, want)
				}
			}
		})
	}
}
