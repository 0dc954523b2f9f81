package initramfs

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cavaliergopher/cpio"
)

// readBack is what a reader sees for one member.
type readBack struct {
	name   string
	mode   cpio.FileMode
	data   string
	link   string
	uid    int
	gid    int
	mtime  int64
	inode  int64
	rdev   [2]int64
	nlinks int
}

// read parses an archive with cavaliergopher/cpio and, alongside, pulls the
// rdev fields (which that reader skips) out of the raw headers.
func read(t *testing.T, img []byte) []readBack {
	t.Helper()
	rdevs := rawRdevs(t, img)
	r := cpio.NewReader(bytes.NewReader(img))
	var out []readBack
	for {
		h, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("reading archive back: %v", err)
		}
		data, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("reading %s back: %v", h.Name, err)
		}
		out = append(out, readBack{
			name: h.Name, mode: h.Mode, data: string(data), link: h.Linkname,
			uid: h.Uid, gid: h.Guid, mtime: h.ModTime.Unix(), inode: h.Inode,
			rdev: rdevs[h.Name], nlinks: h.Links,
		})
	}
	return out
}

func rawRdevs(t *testing.T, img []byte) map[string][2]int64 {
	t.Helper()
	out := map[string][2]int64{}
	for off := 0; off+newcHeaderLen <= len(img); {
		h := img[off : off+newcHeaderLen]
		if string(h[:6]) != "070701" {
			t.Fatalf("offset %d: bad magic %q", off, h[:6])
		}
		field := func(i int) int64 {
			v, err := strconv.ParseInt(string(h[6+8*i:14+8*i]), 16, 64)
			if err != nil {
				t.Fatalf("offset %d: field %d: %v", off, i, err)
			}
			return v
		}
		size, nameLen := field(6), field(11)
		name := string(img[off+newcHeaderLen : off+newcHeaderLen+int(nameLen)-1])
		out[name] = [2]int64{field(9), field(10)}
		if name == "TRAILER!!!" {
			break
		}
		off = align4(align4(off+newcHeaderLen+int(nameLen)) + int(size))
	}
	return out
}

func align4(n int) int { return (n + 3) &^ 3 }

func TestRoundTrip(t *testing.T) {
	src := filepath.Join(t.TempDir(), "agent")
	if err := os.WriteFile(src, []byte("#!agent\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a := New()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// Added out of order on purpose; parents of etc/berth/modules are implied.
	must(a.AddBytes("/etc/berth/modules", 0o644, []byte("kernel/a.ko\n")))
	must(a.AddFile("/init", 0o755, src))
	must(a.AddCharDev("/dev/console", 0o600, 5, 1))
	must(a.AddCharDev("/dev/null", 0o666, 1, 3))
	must(a.Add(Entry{Path: "/dev/sda", Type: BlockDev, Mode: 0o660, Major: 8, Minor: 0}))
	must(a.AddSymlink("/etc/resolv.conf", "/run/resolv.conf"))
	must(a.AddDir("/tmp", fs.ModeSticky|0o777))
	must(a.AddDir("/dev", 0o755))
	must(a.AddBytes("/empty", fs.ModeSetuid|0o755, nil))

	var buf bytes.Buffer
	must(a.Write(&buf, None))
	got := read(t, buf.Bytes())

	want := []readBack{
		{name: "dev", mode: cpio.TypeDir | 0o755, nlinks: 2},
		{name: "dev/console", mode: cpio.TypeChar | 0o600, rdev: [2]int64{5, 1}, nlinks: 1},
		{name: "dev/null", mode: cpio.TypeChar | 0o666, rdev: [2]int64{1, 3}, nlinks: 1},
		{name: "dev/sda", mode: cpio.TypeBlock | 0o660, rdev: [2]int64{8, 0}, nlinks: 1},
		{name: "empty", mode: cpio.TypeReg | 0o4755, nlinks: 1},
		{name: "etc", mode: cpio.TypeDir | 0o755, nlinks: 2},
		{name: "etc/berth", mode: cpio.TypeDir | 0o755, nlinks: 2},
		{name: "etc/berth/modules", mode: cpio.TypeReg | 0o644, data: "kernel/a.ko\n", nlinks: 1},
		{name: "etc/resolv.conf", mode: cpio.TypeSymlink | 0o777, link: "/run/resolv.conf", nlinks: 1},
		{name: "init", mode: cpio.TypeReg | 0o755, data: "#!agent\n", nlinks: 1},
		{name: "tmp", mode: cpio.TypeDir | 0o1777, nlinks: 2},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d members, want %d: %+v", len(got), len(want), got)
	}
	seen := map[int64]string{}
	for i := range want {
		g, w := got[i], want[i]
		if prev, dup := seen[g.inode]; dup || g.inode == 0 {
			t.Errorf("%s: inode %d not unique (also %q)", g.name, g.inode, prev)
		}
		seen[g.inode] = g.name
		if g.uid != 0 || g.gid != 0 || g.mtime != 0 {
			t.Errorf("%s: uid/gid/mtime = %d/%d/%d, want all 0", g.name, g.uid, g.gid, g.mtime)
		}
		g.uid, g.gid, g.mtime, g.inode = 0, 0, 0, 0
		if g != w {
			t.Errorf("member %d:\n got %+v\nwant %+v", i, g, w)
		}
	}
}

func TestDeterministic(t *testing.T) {
	build := func(order []int) []byte {
		a := New()
		adds := []func() error{
			func() error { return a.AddBytes("b/x", 0o644, []byte("x")) },
			func() error { return a.AddBytes("a", 0o600, []byte("aaaa")) },
			func() error { return a.AddSymlink("c", "a") },
			func() error { return a.AddCharDev("dev/console", 0o600, 5, 1) },
		}
		for _, i := range order {
			if err := adds[i](); err != nil {
				t.Fatal(err)
			}
		}
		var buf bytes.Buffer
		if err := a.Write(&buf, None); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	one, two := build([]int{0, 1, 2, 3}), build([]int{3, 2, 1, 0})
	if !bytes.Equal(one, two) {
		t.Fatal("archives differ when entries are added in another order")
	}
	if len(one)%4 != 0 {
		t.Errorf("archive length %d is not 4-byte aligned", len(one))
	}
}

func TestGzip(t *testing.T) {
	a := New()
	if err := a.AddBytes("init", 0o755, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	var plain, packed bytes.Buffer
	if err := a.Write(&plain, None); err != nil {
		t.Fatal(err)
	}
	if err := a.Write(&packed, Gzip); err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(&packed)
	if err != nil {
		t.Fatal(err)
	}
	unpacked, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(unpacked, plain.Bytes()) {
		t.Fatal("gzip stream does not decompress to the plain archive")
	}
}

func TestParseCompression(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Compression
		wantErr bool
	}{
		{"", None, false},
		{"none", None, false},
		{"gzip", Gzip, false},
		{"zstd", None, true},
	} {
		got, err := ParseCompression(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("ParseCompression(%q) = %q, %v", tc.in, got, err)
		}
	}
}

func TestErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	for _, tc := range []struct {
		name     string
		adds     []Entry
		addErr   string // error from the last Add
		writeErr string
	}{
		{name: "duplicate file", adds: []Entry{{Path: "a"}, {Path: "/a"}}, addErr: "already added"},
		{name: "file over dir", adds: []Entry{{Path: "a", Type: Dir}, {Path: "a"}}, addErr: "already added"},
		{name: "root", adds: []Entry{{Path: "/", Type: Dir}}, addErr: "not a path"},
		{name: "dotdot", adds: []Entry{{Path: "../..", Type: Dir}}, addErr: "not a path"},
		{name: "symlink without target", adds: []Entry{{Path: "l", Type: Symlink}}, addErr: "without a target"},
		{name: "type bits in mode", adds: []Entry{{Path: "a", Mode: 0o100644}}, addErr: "beyond permissions"},
		{name: "parent is a file", adds: []Entry{{Path: "a"}, {Path: "a/b"}}, writeErr: "parent a is a file"},
		{name: "parent is a symlink", adds: []Entry{{Path: "lib64", Type: Symlink, Target: "lib"}, {Path: "lib64/x"}}, writeErr: "parent lib64 is a symlink"},
		{name: "missing source", adds: []Entry{{Path: "a", Source: missing}}, writeErr: "opening source"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := New()
			var err error
			for _, e := range tc.adds {
				if err = a.Add(e); err != nil {
					break
				}
			}
			if tc.addErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.addErr) {
					t.Fatalf("Add error = %v, want %q", err, tc.addErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			err = a.Write(io.Discard, None)
			if err == nil || !strings.Contains(err.Error(), tc.writeErr) {
				t.Fatalf("Write error = %v, want %q", err, tc.writeErr)
			}
		})
	}
}

func TestDirTwice(t *testing.T) {
	a := New()
	if err := a.AddDir("tmp", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := a.AddDir("/tmp/", fs.ModeSticky|0o777); err != nil {
		t.Fatalf("adding a dir twice: %v", err)
	}
	if e, _ := a.Lookup("tmp"); e.Mode != fs.ModeSticky|0o777 {
		t.Errorf("mode = %o, want the last one, 1777", e.Mode)
	}
	if !a.Has("/tmp") || a.Has("/nope") || a.Len() != 1 {
		t.Errorf("Has/Len disagree with what was added")
	}
}
