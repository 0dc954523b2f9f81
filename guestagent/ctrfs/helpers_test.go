//go:build linux

package ctrfs

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// box is a container's filesystem laid out in a temp dir: base/root is
// the root filesystem, base/vol and base/ro are volumes mounted at /data
// and /dst/ro, base/hosts a file mounted at /etc/hosts, base/other a
// volume at /other, and base/outside is outside everything.
type box struct {
	base string
	fs   FS
}

func (b box) root(p string) string { return filepath.Join(b.base, "root", p) }

var mtime0 = time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)

func newBox(t testing.TB) box {
	t.Helper()
	base := t.TempDir()
	b := box{base: base}
	files := map[string]string{
		"root/etc/passwd":       "root:x:0:0::/root:/bin/sh\n",
		"root/etc/hosts":        "placeholder\n",
		"root/bin/sh":           "#!binary",
		"root/dst/existing":     "old",
		"root/dst/sub/f":        "sub file",
		"root/proc/cpuinfo":     "cpu",
		"root/sys/kernel":       "k",
		"root/data/hidden":      "under the mount",
		"vol/f":                 "volume file",
		"vol/sub/g":             "volume sub file",
		"ro/keep":               "read-only",
		"other/o":               "other volume",
		"hosts":                 "127.0.0.1 localhost\n",
		"outside/secret":        "host secret",
		"root/dst/ro/.keep":     "",
		"root/other/.keep":      "",
		"root/dst/hardlinked/a": "linked",
	}
	for p, c := range files {
		full := filepath.Join(base, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	links := map[string]string{
		"root/link-abs":    "/etc/passwd",
		"root/lnkdir":      "etc",
		"root/abs":         "/",
		"root/esc":         "../../../../../../outside",
		"root/broken":      "/nope/x",
		"root/loop1":       "/loop2",
		"root/loop2":       "loop1",
		"root/tovol":       "/data",
		"root/dst/out":     "/etc",
		"root/dst/inside":  "sub",
		"root/dst/up":      "../etc",
		"root/dst/escape":  "../../../outside",
		"root/etc/dotdots": "../../../../etc/passwd",
		"hosts-link":       "hosts",
	}
	for p, target := range links {
		if err := os.Symlink(target, filepath.Join(base, p)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Link(b.root("dst/hardlinked/a"), b.root("dst/hardlinked/b")); err != nil {
		t.Fatal(err)
	}
	filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err == nil {
			os.Chtimes(p, mtime0, mtime0)
		}
		return nil
	})
	b.fs = FS{
		Root: filepath.Join(base, "root"),
		Mounts: []Mount{
			{Source: filepath.Join(base, "vol"), Destination: "/data"},
			{Source: filepath.Join(base, "hosts-link"), Destination: "/etc/hosts", ReadOnly: true},
			{Source: filepath.Join(base, "ro"), Destination: "/dst/ro", ReadOnly: true},
			{Source: filepath.Join(base, "other"), Destination: "/other/"},
		},
	}
	return b
}

// snapshot describes every file under dir but those under skip (host
// paths), for comparing before and after.
func snapshot(t testing.TB, dir string, skip ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		for _, s := range skip {
			if p == s || strings.HasPrefix(p, s+"/") {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		desc := fmt.Sprintf("%v %d", fi.Mode(), fi.ModTime().UnixNano())
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			desc += " -> " + l
		case fi.Mode().IsRegular():
			b, _ := os.ReadFile(p)
			desc += fmt.Sprintf(" %x", sha256.Sum256(b))
		}
		out[p] = desc
		return nil
	})
	return out
}

func diffSnapshots(before, after map[string]string) []string {
	var d []string
	for p, a := range after {
		if b, ok := before[p]; !ok {
			d = append(d, "added "+p)
		} else if a != b {
			d = append(d, "changed "+p)
		}
	}
	for p := range before {
		if _, ok := after[p]; !ok {
			d = append(d, "removed "+p)
		}
	}
	sort.Strings(d)
	return d
}

// ent is one entry of a test tar.
type ent struct {
	name string
	typ  byte
	body string
	link string
	mode int64
	uid  int
}

func makeTar(t testing.TB, ents ...ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		hdr := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: e.mode, Uid: e.uid, Gid: e.uid, ModTime: mtime0}
		if hdr.Typeflag == 0 {
			hdr.Typeflag = tar.TypeReg
		}
		if hdr.Mode == 0 {
			hdr.Mode = 0o644
			if hdr.Typeflag == tar.TypeDir {
				hdr.Mode = 0o755
			}
		}
		if hdr.Typeflag == tar.TypeReg {
			hdr.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if hdr.Typeflag == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	return buf.Bytes()
}

// listTar returns "name type [-> link] [body]" for each entry.
func listTar(t testing.TB, r io.Reader) []string {
	t.Helper()
	var out []string
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		s := fmt.Sprintf("%s %c", hdr.Name, hdr.Typeflag)
		if hdr.Linkname != "" {
			s += " -> " + hdr.Linkname
		}
		if hdr.Typeflag == tar.TypeReg {
			b, _ := io.ReadAll(tr)
			s += " " + string(b)
		}
		out = append(out, s)
	}
}
