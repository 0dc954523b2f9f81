package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
)

// entry is one tar entry for test layers.
type entry struct {
	name   string
	typ    byte
	body   string
	link   string
	mode   int64
	xattrs map[string]string
	major  int64
}

func file(name, body string) entry  { return entry{name: name, typ: tar.TypeReg, body: body} }
func dir(name string) entry         { return entry{name: name, typ: tar.TypeDir} }
func symlink(name, to string) entry { return entry{name: name, typ: tar.TypeSymlink, link: to} }
func hardlink(name, to string) entry {
	return entry{name: name, typ: tar.TypeLink, link: to}
}

func makeTar(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		mode := e.mode
		if mode == 0 {
			mode = 0o644
			if e.typ == tar.TypeDir {
				mode = 0o755
			}
		}
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: mode, Size: int64(len(e.body)), Devmajor: e.major}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		for k, v := range e.xattrs {
			if h.PAXRecords == nil {
				h.PAXRecords = map[string]string{}
			}
			h.PAXRecords["SCHILY.xattr."+k] = v
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// jail makes base/{dest,outside/canary} and returns dest and outside.
func jail(t testing.TB) (dest, outside string) {
	t.Helper()
	base := t.TempDir()
	dest, outside = filepath.Join(base, "dest"), filepath.Join(base, "outside")
	for _, d := range []string{dest, outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(outside, "canary"), []byte("canary"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dest, outside
}

func listTree(t testing.TB, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out = append(out, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func assertOutsideUntouched(t testing.TB, outside string) {
	t.Helper()
	got := listTree(t, outside)
	if strings.Join(got, ",") != ".,canary" {
		t.Fatalf("something was written outside the target: %v", got)
	}
	b, err := os.ReadFile(filepath.Join(outside, "canary"))
	if err != nil || string(b) != "canary" {
		t.Fatalf("canary changed: %q %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(outside), "x")); err == nil {
		t.Fatal("file written next to the target")
	}
}

func TestApplyRefusesUnsafe(t *testing.T) {
	tests := []struct {
		name    string
		entries func(outside string) []entry
	}{
		{"dotdot", func(string) []entry { return []entry{file("../x", "evil")} }},
		{"dotdot deep", func(string) []entry { return []entry{dir("a"), file("a/../../x", "evil")} }},
		{"absolute", func(o string) []entry { return []entry{file(o+"/x", "evil")} }},
		{"absolute etc", func(string) []entry { return []entry{file("/etc/berth-test-x", "evil")} }},
		{"symlink to root then write through", func(o string) []entry {
			return []entry{symlink("a", "/"), file("a"+o+"/x", "evil")}
		}},
		{"symlink to outside then write through", func(o string) []entry {
			return []entry{symlink("a", o), file("a/x", "evil")}
		}},
		{"relative symlink escape", func(string) []entry {
			return []entry{symlink("a", "../outside"), file("a/x", "evil")}
		}},
		{"symlink chain", func(o string) []entry {
			return []entry{symlink("b", o), symlink("a", "b"), file("a/x", "evil")}
		}},
		{"symlink dir then dir entry below", func(o string) []entry {
			return []entry{symlink("a", o), dir("a/sub")}
		}},
		{"whiteout through symlink", func(o string) []entry {
			return []entry{symlink("a", o), file("a/.wh.canary", "")}
		}},
		{"opaque through symlink", func(o string) []entry {
			return []entry{symlink("a", o), file("a/.wh..wh..opq", "")}
		}},
		{"hardlink dotdot", func(string) []entry { return []entry{hardlink("h", "../../x")} }},
		{"hardlink absolute outside", func(o string) []entry { return []entry{hardlink("h", o+"/canary")} }},
		{"hardlink through symlink", func(o string) []entry {
			return []entry{symlink("a", o), hardlink("h", "a/canary")}
		}},
		{"hardlink not in layer", func(string) []entry { return []entry{hardlink("h", "etc/passwd")} }},
		{"hardlink to dir", func(string) []entry { return []entry{dir("d"), hardlink("h", "d")} }},
		{"write under a file", func(string) []entry { return []entry{file("f", "x"), file("f/x", "evil")} }},
		{"char device", func(string) []entry {
			return []entry{{name: "dev/mem", typ: tar.TypeChar, major: 1, mode: 0o600}}
		}},
		{"block device", func(string) []entry {
			return []entry{{name: "dev/sda", typ: tar.TypeBlock, major: 8, mode: 0o600}}
		}},
		{"bare whiteout", func(string) []entry { return []entry{file("a/.wh.", "")} }},
		{"whiteout dotdot", func(string) []entry { return []entry{file("a/.wh...", "")} }},
		{"whiteout as dir", func(string) []entry { return []entry{dir(".wh.a")} }},
		{"whiteout as parent", func(string) []entry { return []entry{file(".wh.a/b", "")} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dest, outside := jail(t)
			data := makeTar(t, tt.entries(outside)...)
			_, err := Apply(context.Background(), dest, bytes.NewReader(data), ApplyOptions{})
			if !errors.Is(err, ErrUnsafe) {
				t.Fatalf("Apply error = %v, want ErrUnsafe", err)
			}
			assertOutsideUntouched(t, outside)
			if _, err := os.Stat("/etc/berth-test-x"); err == nil {
				t.Fatal("/etc/berth-test-x was written")
			}
		})
	}
}

func TestApplyContent(t *testing.T) {
	data := makeTar(t,
		dir("bin"),
		entry{name: "bin/tool", typ: tar.TypeReg, body: "#!/bin/sh\n", mode: 0o4755},
		// Tar writers give hardlinks their target's mode.
		entry{name: "bin/tool2", typ: tar.TypeLink, link: "bin/tool", mode: 0o4755},
		entry{name: "bin/tool3", typ: tar.TypeLink, link: "/bin/tool", mode: 0o4755}, // absolute, as kaniko writes them
		symlink("bin/sh", "/bin/tool"),
		symlink("lib", "usr/lib"),
		file("usr/lib/x.so", "elf"), // implied parents
		file("./dot/slash", "ok"),
		entry{name: "fifo", typ: tar.TypeFifo},
		entry{name: "etc/", typ: tar.TypeDir, mode: 0o755},
		entry{name: "etc/attr", typ: tar.TypeReg, body: "a", xattrs: map[string]string{"trusted.overlay.opaque": "y", "user.test": "v"}},
	)
	want := digest.FromBytes(data)
	for _, comp := range []Compression{Uncompressed, Gzip, Zstd} {
		t.Run(comp.String(), func(t *testing.T) {
			dest, outside := jail(t)
			res, err := Apply(context.Background(), dest, bytes.NewReader(compress(t, comp, data)), ApplyOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if res.DiffID != want {
				t.Errorf("DiffID = %s, want %s", res.DiffID, want)
			}
			if res.TarSize != int64(len(data)) {
				t.Errorf("TarSize = %d, want %d", res.TarSize, len(data))
			}
			if res.Compression != comp {
				t.Errorf("Compression = %v, want %v", res.Compression, comp)
			}
			if wantSize := int64(len("#!/bin/sh\n") + len("elf") + len("ok") + 1); res.Size != wantSize {
				t.Errorf("Size = %d, want %d", res.Size, wantSize)
			}
			fi, err := os.Stat(filepath.Join(dest, "bin/tool"))
			if err != nil {
				t.Fatal(err)
			}
			if os.Geteuid() == 0 && fi.Mode()&fs.ModeSetuid == 0 {
				t.Errorf("setuid bit lost: %v", fi.Mode())
			}
			for _, l := range []string{"bin/tool2", "bin/tool3"} {
				li, err := os.Stat(filepath.Join(dest, l))
				if err != nil || !os.SameFile(fi, li) {
					t.Errorf("%s is not a hardlink of bin/tool: %v", l, err)
				}
			}
			if got, _ := os.Readlink(filepath.Join(dest, "bin/sh")); got != "/bin/tool" {
				t.Errorf("bin/sh -> %q", got)
			}
			if b, _ := os.ReadFile(filepath.Join(dest, "dot/slash")); string(b) != "ok" {
				t.Errorf("dot/slash = %q", b)
			}
			if isOpaque(filepath.Join(dest, "etc/attr")) {
				t.Error("overlay xattr from the tar was applied")
			}
			assertOutsideUntouched(t, outside)
		})
	}
}

func compress(t testing.TB, c Compression, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	switch c {
	case Gzip:
		zw := gzip.NewWriter(&buf)
		_, _ = zw.Write(data)
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
	case Zstd:
		zw, err := zstd.NewWriter(&buf)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = zw.Write(data)
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
	default:
		return data
	}
	return buf.Bytes()
}

func TestApplyDevicesAllowed(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mknod needs root")
	}
	dest, _ := jail(t)
	data := makeTar(t, entry{name: "dev/null", typ: tar.TypeChar, major: 1, mode: 0o666})
	if _, err := Apply(context.Background(), dest, bytes.NewReader(data), ApplyOptions{AllowDevices: true}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(filepath.Join(dest, "dev/null"))
	if err != nil || fi.Mode()&fs.ModeCharDevice == 0 {
		t.Fatalf("dev/null not a char device: %v %v", fi, err)
	}
}

func TestApplyWhiteouts(t *testing.T) {
	dest, _ := jail(t)
	data := makeTar(t,
		dir("data"),
		file("data/.wh.gone", ""),
		dir("opq"),
		file("opq/.wh..wh..opq", ""),
		file("opq/new", "n"),
		file(".wh..wh.plnk/123", "aufs"),
	)
	if _, err := Apply(context.Background(), dest, bytes.NewReader(data), ApplyOptions{}); err != nil {
		if os.Geteuid() != 0 && errors.Is(err, syscall.EPERM) {
			t.Skipf("this kernel does not let non-root create whiteouts: %v", err)
		}
		t.Fatal(err)
	}
	fi, err := os.Lstat(filepath.Join(dest, "data/gone"))
	if err != nil || !isWhiteout(fi) {
		t.Fatalf("data/gone is not a whiteout: %v %v", fi, err)
	}
	if !isOpaque(filepath.Join(dest, "opq")) {
		t.Fatal("opq is not opaque")
	}
	got := strings.Join(listTree(t, dest), ",")
	if want := ".,data,data/gone,opq,opq/new"; got != want {
		t.Fatalf("tree = %s, want %s", got, want)
	}
}

func TestApplyBadStream(t *testing.T) {
	tests := map[string][]byte{
		"garbage":        []byte("this is not a tar file at all, just some bytes that go on and on ....................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................."),
		"truncated gzip": compress(t, Gzip, makeTar(t, file("a", "b")))[:20],
		"xz":             {0xfd, '7', 'z', 'X', 'Z', 0x00, 1, 2, 3},
	}
	for name, data := range tests {
		t.Run(name, func(t *testing.T) {
			dest, outside := jail(t)
			if _, err := Apply(context.Background(), dest, bytes.NewReader(data), ApplyOptions{}); err == nil {
				t.Fatal("want error")
			}
			assertOutsideUntouched(t, outside)
		})
	}
}

func TestApplyCancelled(t *testing.T) {
	dest, _ := jail(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Apply(ctx, dest, bytes.NewReader(makeTar(t, file("a", "b"))), ApplyOptions{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

// fuzzOutside is a fixed directory seeds can name by absolute path.
func fuzzOutside(t testing.TB) string {
	o := filepath.Join(os.TempDir(), fmt.Sprintf("berth-fuzzapply-outside-%d", os.Geteuid()))
	if err := os.MkdirAll(o, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(o, "canary"), []byte("canary"), 0o644); err != nil {
		t.Fatal(err)
	}
	return o
}

func FuzzApplyLayer(f *testing.F) {
	o := fuzzOutside(f)
	seeds := [][]entry{
		{file("a", "b"), dir("d"), file("d/e", "f"), symlink("s", "/"), hardlink("h", "a")},
		{symlink("a", "/"), file("a"+o+"/x", "evil")},
		{symlink("a", o), file("a/x", "evil")},
		{file(o+"/x", "evil")},
		{file("../berth-fuzzapply-escape", "evil")},
		{hardlink("h", o+"/canary")},
		{dir("w"), file("w/.wh.x", ""), file("w/.wh..wh..opq", "")},
		{file("f", "x"), dir("f"), file("f/g", "y"), symlink("f", "."), file("f/z", "")},
	}
	for _, s := range seeds {
		data := makeTar(f, s...)
		f.Add(data)
		f.Add(compress(f, Gzip, data))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		base := t.TempDir()
		dest := filepath.Join(base, "dest")
		if err := os.Mkdir(dest, 0o755); err != nil {
			t.Fatal(err)
		}
		_, _ = Apply(context.Background(), dest, bytes.NewReader(data), ApplyOptions{})
		if got := listTree(t, base); len(got) < 2 || got[0] != "." || got[1] != "dest" || (len(got) > 2 && !strings.HasPrefix(got[2], "dest/")) {
			t.Fatalf("written outside dest: %v", got)
		}
		for _, p := range listTree(t, base) {
			if p != "." && p != "dest" && !strings.HasPrefix(p, "dest/") {
				t.Fatalf("written outside dest: %s", p)
			}
		}
		if got := strings.Join(listTree(t, o), ","); got != ".,canary" {
			t.Fatalf("written to the outside dir: %s", got)
		}
		if _, err := os.Stat(filepath.Join(filepath.Dir(o), "berth-fuzzapply-escape")); err == nil {
			t.Fatal("written outside")
		}
	})
}
