package images

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/moby/moby/api/types/container"
	"golang.org/x/sys/unix"

	"github.com/berthvm/berth/images/imagetest"
)

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (whiteout devices, trusted.* xattrs, mounts)")
	}
}

// mountOverlay mounts lowers (top-most first) read-only, or read-write
// with upper, and returns the merged dir.
func mountOverlay(t testing.TB, lowers []string, upper string) string {
	t.Helper()
	base := t.TempDir()
	merged := filepath.Join(base, "merged")
	if err := os.Mkdir(merged, 0o755); err != nil {
		t.Fatal(err)
	}
	opts := "lowerdir=" + strings.Join(lowers, ":")
	if len(lowers) == 1 && upper == "" {
		// overlayfs needs two lower dirs without an upper one.
		empty := filepath.Join(base, "empty")
		_ = os.Mkdir(empty, 0o755)
		opts += ":" + empty
	}
	if upper != "" {
		work := filepath.Join(base, "work")
		_ = os.Mkdir(work, 0o755)
		opts += ",upperdir=" + upper + ",workdir=" + work + ",redirect_dir=off,index=off"
	}
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		t.Skipf("cannot mount overlayfs here: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(merged, unix.MNT_DETACH) })
	return merged
}

func TestOverlayMergedView(t *testing.T) {
	requireRoot(t)
	p := pushTestImages(t, imagetest.RegistryOptions{})
	s := newStore(t)
	ctx := context.Background()
	img, err := s.Pull(ctx, p.layered, PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	lowers, err := s.LowerDirs(ctx, img.ID)
	if err != nil {
		t.Fatal(err)
	}
	m := mountOverlay(t, lowers, "")
	tests := []struct {
		path   string
		exists bool
		body   string
	}{
		{"data/keep", true, "keep\n"},
		{"data/gone", false, ""},
		{"opq/new", true, "new\n"},
		{"opq/old1", false, ""},
		{"opq/olddir", false, ""},
		{"etc/motd", true, "v2\n"},
		{"usr/local/bin/greet2", true, "#!/bin/sh\necho \"$GREETING from greet\"\n"},
		{"bin/sh", true, ""},
	}
	for _, tt := range tests {
		b, err := os.ReadFile(filepath.Join(m, tt.path))
		if tt.exists != (err == nil) {
			t.Errorf("%s: exists = %v (%v), want %v", tt.path, err == nil, err, tt.exists)
			continue
		}
		if tt.exists && tt.body != "" && string(b) != tt.body {
			t.Errorf("%s = %q, want %q", tt.path, b, tt.body)
		}
	}
	entries, _ := os.ReadDir(filepath.Join(m, "opq"))
	if len(entries) != 1 {
		t.Errorf("opq has %v, want only new", entries)
	}
	fi, err := os.Stat(filepath.Join(m, "home/app"))
	if err != nil || fi.Sys().(*syscall.Stat_t).Uid != 1000 {
		t.Errorf("home/app owner: %v %v", fi, err)
	}
}

func TestCommitAndChanges(t *testing.T) {
	requireRoot(t)
	p := pushTestImages(t, imagetest.RegistryOptions{})
	s := newStore(t)
	ctx := context.Background()
	parent, err := s.Pull(ctx, p.layered, PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	lowers, _ := s.LowerDirs(ctx, parent.ID)
	upper := filepath.Join(t.TempDir(), "upper")
	if err := os.Mkdir(upper, 0o755); err != nil {
		t.Fatal(err)
	}
	// Work in a real overlay mount, as a container would.
	m := mountOverlay(t, lowers, upper)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(m, "data/new"), []byte("added"), 0o644))
	must(os.WriteFile(filepath.Join(m, "etc/motd"), []byte("v3\n"), 0o644))
	must(os.Remove(filepath.Join(m, "data/keep")))
	must(os.RemoveAll(filepath.Join(m, "opq")))
	must(os.Mkdir(filepath.Join(m, "opq"), 0o755))
	must(os.WriteFile(filepath.Join(m, "opq/fresh"), []byte("f"), 0o644))

	changes, err := Changes(upper, lowers)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range changes {
		got = append(got, c.Kind.String()+" "+c.Path)
	}
	want := []string{"C /data", "D /data/keep", "A /data/new", "C /etc", "C /etc/motd", "C /opq", "A /opq/fresh", "D /opq/new"}
	if !slices.Equal(got, want) {
		t.Fatalf("changes:\n got %v\nwant %v", got, want)
	}
	if changes[0].Kind != container.ChangeModify {
		t.Fatal("kind values are not Docker's")
	}

	cfg, _ := s.Config(ctx, parent.ID)
	newCfg := cfg.Config
	newCfg.Cmd = []string{"cat", "/etc/motd"}
	newCfg.Env = append(newCfg.Env, "COMMITTED=1")
	img, err := s.Commit(ctx, CommitOptions{
		Parent: parent.ID, UpperDir: upper, Config: &newCfg,
		Author: "tester", Comment: "a commit", CreatedBy: "sh -c edit", Reference: "committed:v1",
	})
	if err != nil {
		t.Fatal(err)
	}
	if img.Parent != parent.ID || len(img.Layers) != 4 || !slices.Equal(img.RepoTags, []string{"committed:v1"}) {
		t.Fatalf("committed: %+v", img)
	}
	c2, _ := s.Config(ctx, img.ID)
	if !slices.Equal(c2.Config.Cmd, []string{"cat", "/etc/motd"}) || c2.Author != "tester" || len(c2.History) != 5 || c2.History[4].Comment != "a commit" {
		t.Fatalf("config: %+v", c2)
	}
	// The new image's merged view is the container's.
	lowers2, _ := s.LowerDirs(ctx, img.ID)
	m2 := mountOverlay(t, lowers2, "")
	for path, body := range map[string]string{"data/new": "added", "etc/motd": "v3\n", "opq/fresh": "f", "data/keep": "", "opq/new": ""} {
		b, err := os.ReadFile(filepath.Join(m2, path))
		if body == "" {
			if err == nil {
				t.Errorf("%s exists in the committed image", path)
			}
			continue
		}
		if err != nil || string(b) != body {
			t.Errorf("%s = %q, %v; want %q", path, b, err, body)
		}
	}
	hist, err := s.History(ctx, img.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 5 || hist[0].ID != img.ID || hist[0].CreatedBy != "sh -c edit" || hist[1].ID != parent.ID || hist[2].ID != "<missing>" {
		t.Fatalf("history: %+v", hist)
	}
	// A parent with a child cannot go by ID; untagging is fine.
	if _, err := s.Remove(ctx, parent.ID, RemoveOptions{Force: true}); err == nil || !strings.Contains(err.Error(), "dependent child images") {
		t.Fatalf("removing the parent: %v", err)
	}
	resp, err := s.Remove(ctx, p.layered, RemoveOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, d := deleted(resp); len(d) != 0 {
		t.Fatalf("parent deleted while it has a child: %+v", resp)
	}
	list, _ := s.List(ctx, ListOptions{})
	if len(list) != 1 || list[0].ParentID != parent.ID {
		t.Fatalf("list hides the intermediate parent: %+v", list)
	}
	// Removing the child takes the untagged parent along.
	resp, err = s.Remove(ctx, "committed:v1", RemoveOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, d := deleted(resp); !slices.Contains(d, img.ID) || !slices.Contains(d, parent.ID) {
		t.Fatalf("resp: %+v", resp)
	}
}

func TestCommitEmpty(t *testing.T) {
	p := pushTestImages(t, imagetest.RegistryOptions{})
	s := newStore(t)
	ctx := context.Background()
	parent, _ := s.Pull(ctx, p.busybox, PullOptions{})
	upper := t.TempDir()
	img, err := s.Commit(ctx, CommitOptions{Parent: parent.ID, UpperDir: upper, Config: &dockerspec.DockerOCIImageConfig{}})
	if err != nil {
		t.Fatal(err)
	}
	if len(img.Layers) != 1 || img.ID == parent.ID || len(img.RepoTags) != 0 {
		t.Fatalf("%+v", img)
	}
	cfg, _ := s.Config(ctx, img.ID)
	if n := len(cfg.History); n != 2 || !cfg.History[1].EmptyLayer {
		t.Fatalf("history: %+v", cfg.History)
	}
	// Without root the commit of files works too (no whiteouts needed).
	if err := os.WriteFile(filepath.Join(upper, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	img2, err := s.Commit(ctx, CommitOptions{Parent: img.ID, UpperDir: upper})
	if err != nil {
		t.Fatal(err)
	}
	if len(img2.Layers) != 2 {
		t.Fatalf("%+v", img2)
	}
	if b, ok := readLayerFile(t, s, img2.ID, "f"); !ok || b != "x" {
		t.Fatalf("f = %q", b)
	}
}
