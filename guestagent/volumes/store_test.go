package volumes

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/berthvm/berth/guestagent/engine"
	"github.com/moby/moby/api/types/volume"
)

var ctx = context.Background()

func open(t *testing.T, root string) *Store {
	t.Helper()
	s, err := Open(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustCreate(t *testing.T, s *Store, req volume.CreateRequest) volume.Volume {
	t.Helper()
	v, err := s.Create(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func names(vs []volume.Volume) []string {
	out := []string{}
	for _, v := range vs {
		out = append(out, v.Name)
	}
	return out
}

func TestCreateInspect(t *testing.T) {
	root := t.TempDir()
	s := open(t, root)
	before := time.Now().Add(-time.Second)
	v := mustCreate(t, s, volume.CreateRequest{Name: "data", Labels: map[string]string{"a": "1"}})
	if v.Name != "data" || v.Driver != "local" || v.Scope != "local" || v.Labels["a"] != "1" {
		t.Errorf("created %+v", v)
	}
	if v.Mountpoint != filepath.Join(root, "data", "_data") {
		t.Errorf("mountpoint %s", v.Mountpoint)
	}
	if fi, err := os.Stat(v.Mountpoint); err != nil || !fi.IsDir() {
		t.Errorf("mountpoint is not a directory: %v", err)
	}
	created, err := time.Parse(time.RFC3339, v.CreatedAt)
	if err != nil || created.Before(before.Truncate(time.Second)) || created.After(time.Now()) {
		t.Errorf("CreatedAt %q: %v", v.CreatedAt, err)
	}

	// Creating it again returns it unchanged.
	again := mustCreate(t, s, volume.CreateRequest{Name: "data", Driver: "local", Labels: map[string]string{"b": "2"}})
	if again.CreatedAt != v.CreatedAt || again.Labels["b"] != "" || again.Labels["a"] != "1" {
		t.Errorf("re-created %+v", again)
	}
	got, err := s.Inspect(ctx, "data")
	if err != nil || got.Name != "data" || got.Mountpoint != v.Mountpoint {
		t.Errorf("inspect: %+v, %v", got, err)
	}

	anon := mustCreate(t, s, volume.CreateRequest{})
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(anon.Name) {
		t.Errorf("anonymous name %q", anon.Name)
	}
	if _, ok := anon.Labels[AnonymousLabel]; !ok {
		t.Errorf("anonymous labels %v", anon.Labels)
	}

	_, err = s.Inspect(ctx, "nope")
	if !errors.Is(err, engine.ErrNotFound) || err.Error() != "get nope: no such volume" {
		t.Errorf("inspect unknown: %v", err)
	}
}

func TestCreateInvalid(t *testing.T) {
	s := open(t, t.TempDir())
	tests := []struct {
		req  volume.CreateRequest
		want string
	}{
		{volume.CreateRequest{Name: "a"}, "volume name is too short, names should be at least two alphanumeric characters"},
		{volume.CreateRequest{Name: "_ab"}, `"_ab" includes invalid characters for a local volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, use absolute path`},
		{volume.CreateRequest{Name: "a/b"}, `"a/b" includes invalid characters`},
		{volume.CreateRequest{Name: ".."}, `".." includes invalid characters`},
		{volume.CreateRequest{Name: "/abs"}, `"/abs" includes invalid characters`},
		{volume.CreateRequest{Name: "a b"}, `"a b" includes invalid characters`},
		{volume.CreateRequest{Name: "ok1", Driver: "nfs"}, "volume driver nfs is not supported"},
		{volume.CreateRequest{Name: "ok2", DriverOpts: map[string]string{"type": "tmpfs", "device": "tmpfs"}}, "volume options are not supported (device, type)"},
		{volume.CreateRequest{Name: "ok3", DriverOpts: map[string]string{"bogus": "1"}}, `invalid option: "bogus"`},
	}
	for _, tt := range tests {
		_, err := s.Create(ctx, tt.req)
		if !errors.Is(err, engine.ErrInvalid) || !regexp.MustCompile("^"+regexp.QuoteMeta(tt.want)).MatchString(err.Error()) {
			t.Errorf("Create(%+v): %v, want ErrInvalid %q", tt.req, err, tt.want)
		}
	}
	if vs, _ := s.List(ctx, nil); len(vs) != 0 {
		t.Errorf("invalid creates left %v", names(vs))
	}
	// An empty option map is fine.
	mustCreate(t, s, volume.CreateRequest{Name: "ok4", DriverOpts: map[string]string{}})
}

func TestList(t *testing.T) {
	s := open(t, t.TempDir())
	mustCreate(t, s, volume.CreateRequest{Name: "web-data", Labels: map[string]string{"app": "web", "tier": "front"}})
	mustCreate(t, s, volume.CreateRequest{Name: "db-data", Labels: map[string]string{"app": "db"}})
	mustCreate(t, s, volume.CreateRequest{Name: "cache"})
	if _, err := s.Acquire(ctx, "db-data", "c1", false); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		filters map[string][]string
		want    []string
		err     string
	}{
		{nil, []string{"cache", "db-data", "web-data"}, ""},
		{map[string][]string{"name": {"data"}}, []string{"db-data", "web-data"}, ""},
		{map[string][]string{"name": {"^db"}}, []string{"db-data"}, ""},
		{map[string][]string{"name": {"cache", "web"}}, []string{"cache", "web-data"}, ""},
		{map[string][]string{"label": {"app"}}, []string{"db-data", "web-data"}, ""},
		{map[string][]string{"label": {"app=web"}}, []string{"web-data"}, ""},
		{map[string][]string{"label": {"app=web", "tier=back"}}, []string{}, ""},
		{map[string][]string{"label": {"app", "tier"}}, []string{"web-data"}, ""},
		{map[string][]string{"dangling": {"true"}}, []string{"cache", "web-data"}, ""},
		{map[string][]string{"dangling": {"0"}}, []string{"db-data"}, ""},
		{map[string][]string{"driver": {"local"}}, []string{"cache", "db-data", "web-data"}, ""},
		{map[string][]string{"driver": {"nfs"}}, []string{}, ""},
		{map[string][]string{"dangling": {"maybe"}}, nil, "invalid filter 'dangling=[maybe]'"},
		{map[string][]string{"dangling": {"true", "false"}}, nil, "invalid filter 'dangling=[false true]'"},
		{map[string][]string{"bogus": {"x"}}, nil, "invalid filter 'bogus'"},
	}
	for _, tt := range tests {
		got, err := s.List(ctx, tt.filters)
		if tt.err != "" {
			if !errors.Is(err, engine.ErrInvalid) || err.Error() != tt.err {
				t.Errorf("List(%v): %v, want %q", tt.filters, err, tt.err)
			}
			continue
		}
		if err != nil || !slices.Equal(names(got), tt.want) {
			t.Errorf("List(%v) = %v, %v; want %v", tt.filters, names(got), err, tt.want)
		}
	}
}

func TestReferences(t *testing.T) {
	root := t.TempDir()
	s := open(t, root)
	m, err := s.Acquire(ctx, "shared", "c1", false)
	if err != nil || !m.Created || m.Name != "shared" || m.Path != filepath.Join(root, "shared", "_data") {
		t.Fatalf("first acquire: %+v, %v", m, err)
	}
	for _, id := range []string{"c1", "c2", "c2"} {
		m, err := s.Acquire(ctx, "shared", id, false)
		if err != nil || m.Created {
			t.Fatalf("acquire by %s: %+v, %v", id, m, err)
		}
	}
	anon, err := s.Acquire(ctx, "", "c1", false)
	if err != nil || !anon.Created || len(anon.Name) != 64 {
		t.Fatalf("anonymous acquire: %+v, %v", anon, err)
	}
	named, err := s.Acquire(ctx, "anon2", "c2", true)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := s.Inspect(ctx, named.Name); v.Labels[AnonymousLabel] != "" || len(v.Labels) != 1 {
		t.Errorf("anonymous acquire labels: %v", v.Labels)
	}
	if _, err := s.Acquire(ctx, "bad/name", "c1", false); !errors.Is(err, engine.ErrInvalid) {
		t.Errorf("acquire with a bad name: %v", err)
	}

	err = s.Remove(ctx, "shared", false)
	if !errors.Is(err, engine.ErrConflict) || err.Error() != "remove shared: volume is in use - [c1, c2]" {
		t.Errorf("remove in use: %v", err)
	}
	err = s.Remove(ctx, "nope", false)
	if !errors.Is(err, engine.ErrNotFound) || err.Error() != "get nope: no such volume" {
		t.Errorf("remove unknown: %v", err)
	}

	// References survive a restart.
	s = open(t, root)
	if err := s.Remove(ctx, "shared", false); !errors.Is(err, engine.ErrConflict) {
		t.Errorf("after reopen, remove in use: %v", err)
	}
	if err := s.Release("shared", "c2"); err != nil {
		t.Fatal(err)
	}
	if err := s.Release("shared", "c2"); err != nil {
		t.Errorf("second release: %v", err)
	}
	if err := s.Release("nope", "c2"); err != nil {
		t.Errorf("release of an unknown volume: %v", err)
	}
	got, err := s.ReleaseAll("c1")
	if err != nil || !slices.Equal(got, []string{anon.Name}) {
		t.Errorf("ReleaseAll(c1) = %v, %v; want [%s]", got, err, anon.Name)
	}
	if got, _ := s.ReleaseAll("c1"); len(got) != 0 {
		t.Errorf("second ReleaseAll = %v", got)
	}
	dangling, _ := s.List(ctx, map[string][]string{"dangling": {"true"}})
	if want := []string{anon.Name, "shared"}; !slices.Equal(names(dangling), slices.Sorted(slices.Values(want))) {
		t.Errorf("dangling after releases: %v", names(dangling))
	}
	s = open(t, root)
	if err := s.Remove(ctx, "shared", false); err != nil {
		t.Errorf("remove after release: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "shared")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("removed volume's directory: %v", err)
	}
	// Force removes a volume in use.
	if err := s.Remove(ctx, "anon2", true); err != nil {
		t.Errorf("forced remove: %v", err)
	}
	if _, err := s.Inspect(ctx, "anon2"); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("after forced remove: %v", err)
	}
}

func TestOpenCleansUp(t *testing.T) {
	root := t.TempDir()
	s := open(t, root)
	mustCreate(t, s, volume.CreateRequest{Name: "good"})
	mk := func(p string, data bool) {
		if err := os.MkdirAll(filepath.Join(root, p, "_data"), 0o755); err != nil {
			t.Fatal(err)
		}
		if data {
			os.WriteFile(filepath.Join(root, p, "_data", "f"), []byte("x"), 0o644)
		}
	}
	mk(".creating-half-1234", true)
	mk(".removing-old-abcd", true)
	mk("nometa", false)
	mk("nometa-with-data", true)
	mk("corrupt", true)
	os.WriteFile(filepath.Join(root, "corrupt", "meta.json"), []byte("{"), 0o644)
	os.WriteFile(filepath.Join(root, "stray-file"), []byte("x"), 0o644)

	s = open(t, root)
	vs, err := s.List(ctx, nil)
	if err != nil || !slices.Equal(names(vs), []string{"good"}) {
		t.Errorf("volumes after reopen: %v, %v", names(vs), err)
	}
	for p, exists := range map[string]bool{
		".creating-half-1234": false, ".removing-old-abcd": false, "nometa": false,
		"nometa-with-data": true, "corrupt": true, "good": true,
	} {
		_, err := os.Stat(filepath.Join(root, p))
		if (err == nil) != exists {
			t.Errorf("%s: exists=%v, want %v", p, err == nil, exists)
		}
	}
	// The name of a skipped directory cannot be created over it.
	if _, err := s.Create(ctx, volume.CreateRequest{Name: "corrupt"}); err == nil {
		t.Errorf("created a volume over an unreadable one")
	}
}

func writeFile(t *testing.T, p string, size int) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, make([]byte, size), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestPruneAndUsage(t *testing.T) {
	s := open(t, t.TempDir())
	anonFree := mustCreate(t, s, volume.CreateRequest{})
	anonUsed, _ := s.Acquire(ctx, "", "c1", true)
	named := mustCreate(t, s, volume.CreateRequest{Name: "named", Labels: map[string]string{"keep": "no"}})
	mustCreate(t, s, volume.CreateRequest{Name: "kept", Labels: map[string]string{"keep": "yes"}})
	writeFile(t, filepath.Join(anonFree.Mountpoint, "a"), 1000)
	writeFile(t, filepath.Join(anonFree.Mountpoint, "d", "b"), 24)
	if err := os.Link(filepath.Join(anonFree.Mountpoint, "a"), filepath.Join(anonFree.Mountpoint, "d", "a-link")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(anonUsed.Path, "a"), 7)
	writeFile(t, filepath.Join(named.Mountpoint, "a"), 300)
	os.Symlink("/etc/passwd", filepath.Join(named.Mountpoint, "link"))

	usage, err := s.Usage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][2]int64{anonFree.Name: {1024, 0}, anonUsed.Name: {7, 1}, "named": {300 + int64(len("/etc/passwd")), 0}, "kept": {0, 0}}
	for _, v := range usage {
		if v.UsageData == nil || [2]int64{v.UsageData.Size, v.UsageData.RefCount} != want[v.Name] {
			t.Errorf("usage of %s: %+v, want %v", v.Name, v.UsageData, want[v.Name])
		}
	}
	if len(usage) != 4 {
		t.Errorf("usage lists %d volumes", len(usage))
	}

	for _, bad := range []map[string][]string{
		{"all": {"maybe"}}, {"all": {"true", "false"}}, {"dangling": {"true"}},
	} {
		if _, err := s.Prune(ctx, bad); !errors.Is(err, engine.ErrInvalid) {
			t.Errorf("Prune(%v): %v, want ErrInvalid", bad, err)
		}
	}

	rep, err := s.Prune(ctx, nil)
	if err != nil || !slices.Equal(rep.VolumesDeleted, []string{anonFree.Name}) || rep.SpaceReclaimed != 1024 {
		t.Errorf("default prune: %+v, %v", rep, err)
	}
	rep, err = s.Prune(ctx, map[string][]string{"all": {"true"}, "label!": {"keep=yes"}})
	if err != nil || !slices.Equal(rep.VolumesDeleted, []string{"named"}) || int64(rep.SpaceReclaimed) != want["named"][0] {
		t.Errorf("prune all but keep=yes: %+v, %v", rep, err)
	}
	rep, err = s.Prune(ctx, map[string][]string{"all": {"1"}, "label": {"keep"}})
	if err != nil || !slices.Equal(rep.VolumesDeleted, []string{"kept"}) {
		t.Errorf("prune label keep: %+v, %v", rep, err)
	}
	left, _ := s.List(ctx, nil)
	if !slices.Equal(names(left), []string{anonUsed.Name}) {
		t.Errorf("left after prunes: %v", names(left))
	}
	if _, err := os.Stat(anonFree.Mountpoint); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pruned data still there: %v", err)
	}
}

// TestConcurrent runs creators, users and removers at once; under -race
// it checks the locking, and at the end that every reference is there,
// also after a reopen.
func TestConcurrent(t *testing.T) {
	root := t.TempDir()
	s := open(t, root)
	const workers = 8
	const rounds = 20
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("ctr%d", w)
			for r := range rounds {
				if _, err := s.Acquire(ctx, "shared", id, false); err != nil {
					t.Error(err)
					return
				}
				mine := fmt.Sprintf("v%d-%d", w, r)
				mustCreateErr(t, s, mine)
				s.List(ctx, map[string][]string{"dangling": {"true"}})
				s.Usage(ctx)
				if r%2 == 0 {
					if err := s.Remove(ctx, mine, false); err != nil {
						t.Error(err)
					}
				}
				if err := s.Remove(ctx, "shared", false); !errors.Is(err, engine.ErrConflict) {
					t.Errorf("removing a shared volume in use: %v", err)
				}
				if _, err := s.Acquire(ctx, "", id, false); err != nil {
					t.Error(err)
				}
			}
			if w%2 == 0 {
				if _, err := s.ReleaseAll(id); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range rounds {
			s.Prune(ctx, nil)
		}
	}()
	wg.Wait()

	check := func(s *Store) {
		t.Helper()
		usage, err := s.Usage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var shared int64 = -1
		anon := 0
		plain := 0
		for _, v := range usage {
			switch _, isAnon := v.Labels[AnonymousLabel]; {
			case v.Name == "shared":
				shared = v.UsageData.RefCount
			case isAnon:
				if v.UsageData.RefCount > 1 {
					t.Errorf("anonymous volume %s has %d users", v.Name, v.UsageData.RefCount)
				}
				anon += int(v.UsageData.RefCount)
			default:
				plain++
			}
		}
		if shared != workers/2 {
			t.Errorf("shared has %d users, want %d", shared, workers/2)
		}
		// Odd workers keep their anonymous volumes; even ones released
		// theirs, which the pruner may or may not have removed.
		if anon != workers/2*rounds {
			t.Errorf("%d anonymous volumes in use, want %d", anon, workers/2*rounds)
		}
		if plain != workers*rounds/2 {
			t.Errorf("%d named volumes, want %d", plain, workers*rounds/2)
		}
	}
	check(s)
	check(open(t, root))
}

func mustCreateErr(t *testing.T, s *Store, name string) {
	if _, err := s.Create(ctx, volume.CreateRequest{Name: name}); err != nil {
		t.Error(err)
	}
}
