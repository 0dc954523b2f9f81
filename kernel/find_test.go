package kernel

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func mkBundle(t *testing.T, dir string, files ...string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFind(t *testing.T) {
	type layout struct {
		env, exe, wd string // relative to the temp root; "" means unset
		bundles      map[string][]string
		gomods       map[string]string // dir -> module path
		symlinks     map[string]string // link -> target (both relative)
	}
	both := []string{KernelFile, InitrdFile}
	for _, tc := range []struct {
		name    string
		arch    string
		l       layout
		want    string // dir of the bundle found, relative; "" for an error
		wantErr []string
	}{
		{
			name: "env dir holds the files",
			arch: "x86_64",
			l: layout{env: "g", exe: "inst/bin/berth",
				bundles: map[string][]string{"g": both, "inst/share/berth/guest/x86_64": both}},
			want: "g",
		},
		{
			name: "env dir per arch",
			arch: "aarch64",
			l: layout{env: "g", exe: "inst/bin/berth",
				bundles: map[string][]string{"g/x86_64": both, "g/aarch64": both}},
			want: "g/aarch64",
		},
		{
			name: "go arch name accepted",
			arch: "arm64",
			l:    layout{env: "g", bundles: map[string][]string{"g/aarch64": both}},
			want: "g/aarch64",
		},
		{
			name: "an incomplete env dir is an error, not a fall-through",
			arch: "x86_64",
			l: layout{env: "g", exe: "inst/bin/berth",
				bundles: map[string][]string{"g": {KernelFile}, "inst/share/berth/guest/x86_64": both}},
			want:    "",
			wantErr: []string{"make guest"},
		},
		{
			name: "install tree beats source tree",
			arch: "x86_64",
			l: layout{exe: "inst/bin/berth", wd: "src",
				gomods: map[string]string{"src": ModulePath},
				bundles: map[string][]string{
					"src/out/share/berth/guest/x86_64": both,
					"inst/share/berth/guest/x86_64":    both,
				}},
			want: "inst/share/berth/guest/x86_64",
		},
		{
			name: "symlinked binary finds share next to the real file",
			arch: "x86_64",
			l: layout{exe: "usr/bin/berth",
				symlinks: map[string]string{"usr/bin/berth": "cellar/berth/1.0/bin/berth"},
				bundles:  map[string][]string{"cellar/berth/1.0/share/berth/guest/x86_64": both}},
			want: "cellar/berth/1.0/share/berth/guest/x86_64",
		},
		{
			name: "source tree from the working directory, past a nested module",
			arch: "aarch64",
			l: layout{exe: "elsewhere/go-build/b001/exe/berth", wd: "src/out/build/probe/sub",
				gomods: map[string]string{"src": ModulePath, "src/out/build/probe": "probe"},
				bundles: map[string][]string{
					"src/out/share/berth/guest/aarch64":                 both,
					"src/out/build/probe/out/share/berth/guest/aarch64": both,
				}},
			want: "src/out/share/berth/guest/aarch64",
		},
		{
			name: "source tree from the executable (go test binary in the tree)",
			arch: "x86_64",
			l: layout{exe: "src/cmd/berth/berth", wd: "/",
				gomods:  map[string]string{"src": ModulePath},
				bundles: map[string][]string{"src/out/share/berth/guest/x86_64": both}},
			want: "src/out/share/berth/guest/x86_64",
		},
		{
			name: "other module is not a berth tree",
			arch: "x86_64",
			l: layout{wd: "other/cmd", gomods: map[string]string{"other": "example.com/other"},
				bundles: map[string][]string{"other/out/share/berth/guest/x86_64": both}},
			wantErr: []string{`run "make guest"`, GuestDirEnv},
		},
		{
			name: "nothing found lists where it looked",
			arch: "x86_64",
			l: layout{exe: "inst/bin/berth", wd: "src/cmd",
				gomods:  map[string]string{"src": ModulePath},
				bundles: map[string][]string{"inst/share/berth/guest/aarch64": both, "src/out/share/berth/guest/x86_64": {InitrdFile}}},
			wantErr: []string{
				"for x86_64 not found",
				"\n  {root}/inst/share/berth/guest/x86_64\n  {root}/src/out/share/berth/guest/x86_64\n",
				`run "make guest"`,
			},
		},
		{name: "unknown arch", arch: "riscv64", wantErr: []string{`unknown guest architecture "riscv64"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, err := filepath.EvalSymlinks(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			abs := func(p string) string {
				if p == "" {
					return ""
				}
				if filepath.IsAbs(p) {
					return p
				}
				return filepath.Join(root, filepath.FromSlash(p))
			}
			for dir, files := range tc.l.bundles {
				mkBundle(t, abs(dir), files...)
			}
			for dir, mod := range tc.l.gomods {
				if err := os.MkdirAll(abs(dir), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(abs(dir), "go.mod"), []byte("// comment\nmodule "+mod+"\n\ngo 1.26\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			for link, target := range tc.l.symlinks {
				if runtime.GOOS == "windows" {
					t.Skip("symlinks need privileges on windows")
				}
				mkBundle(t, filepath.Dir(abs(target)))
				if err := os.WriteFile(abs(target), nil, 0o755); err != nil {
					t.Fatal(err)
				}
				mkBundle(t, filepath.Dir(abs(link)))
				if err := os.Symlink(abs(target), abs(link)); err != nil {
					t.Fatal(err)
				}
			}
			k, i, err := find(tc.arch, abs(tc.l.env), abs(tc.l.exe), abs(tc.l.wd))
			if tc.want == "" {
				if err == nil {
					t.Fatalf("found %s, %s; want an error", k, i)
				}
				for _, w := range tc.wantErr {
					w = strings.ReplaceAll(w, "{root}", root)
					if !strings.Contains(err.Error(), filepath.FromSlash(w)) {
						t.Errorf("error %q does not contain %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if k != filepath.Join(abs(tc.want), KernelFile) || i != filepath.Join(abs(tc.want), InitrdFile) {
				t.Errorf("found %s, %s; want them in %s", k, i, abs(tc.want))
			}
		})
	}
}

func TestFindUsesEnv(t *testing.T) {
	dir := t.TempDir()
	mkBundle(t, filepath.Join(dir, "x86_64"), KernelFile, InitrdFile)
	t.Setenv(GuestDirEnv, dir)
	k, _, err := Find("x86_64")
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "x86_64", KernelFile); k != want {
		t.Errorf("kernel = %s, want %s", k, want)
	}
}
