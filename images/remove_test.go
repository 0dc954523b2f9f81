package images

import (
	"context"
	"errors"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/image"
	"github.com/opencontainers/go-digest"

	"github.com/berthvm/berth/images/imagetest"
)

func deleted(resp []image.DeleteResponse) (untagged, deletedIDs []string) {
	for _, r := range resp {
		if r.Untagged != "" {
			untagged = append(untagged, r.Untagged)
		}
		if r.Deleted != "" {
			deletedIDs = append(deletedIDs, r.Deleted)
		}
	}
	sort.Strings(untagged)
	return untagged, deletedIDs
}

func TestRemove(t *testing.T) {
	p := pushTestImages(t, imagetest.RegistryOptions{})
	ctx := context.Background()
	inUse := func(string) bool { return true }

	t.Run("untag one of two tags", func(t *testing.T) {
		s := newStore(t)
		img, _ := s.Pull(ctx, p.busybox, PullOptions{})
		if err := s.Tag(ctx, img.ID, "mine:2"); err != nil {
			t.Fatal(err)
		}
		resp, err := s.Remove(ctx, "mine:2", RemoveOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if u, d := deleted(resp); !slices.Equal(u, []string{"mine:2"}) || len(d) != 0 {
			t.Fatalf("resp = %+v", resp)
		}
		if _, err := s.Resolve(ctx, img.ID); err != nil {
			t.Fatal("image gone after untagging one of its tags")
		}
		// The last tag takes the repo's digest and the image with it.
		resp, err = s.Remove(ctx, p.busybox, RemoveOptions{})
		if err != nil {
			t.Fatal(err)
		}
		u, d := deleted(resp)
		wantU := []string{p.busybox, img.RepoDigests[0]}
		sort.Strings(wantU)
		if !slices.Equal(u, wantU) || len(d) != 2 || d[0] != img.ID || d[1] != img.Layers[0].ChainID.String() {
			t.Fatalf("resp = %+v", resp)
		}
		if _, err := s.Resolve(ctx, img.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("image still there: %v", err)
		}
		if keys, _ := s.snapshots.List(); len(keys) != 0 {
			t.Fatalf("snapshots left: %v", keys)
		}
		n := 0
		_ = s.content.Walk(func(_ digest.Digest, _ int64) error { n++; return nil })
		if n != 0 {
			t.Fatalf("%d blobs left", n)
		}
	})

	t.Run("in use", func(t *testing.T) {
		s := newStore(t)
		img, _ := s.Pull(ctx, p.busybox, PullOptions{})
		if _, err := s.Remove(ctx, p.busybox, RemoveOptions{InUse: inUse}); !errors.Is(err, ErrConflict) {
			t.Fatalf("err = %v, want conflict", err)
		}
		if _, err := s.Remove(ctx, img.ID, RemoveOptions{InUse: inUse}); !errors.Is(err, ErrConflict) {
			t.Fatalf("by ID: err = %v, want conflict", err)
		}
		resp, err := s.Remove(ctx, p.busybox, RemoveOptions{InUse: inUse, Force: true})
		if err != nil {
			t.Fatal(err)
		}
		if _, d := deleted(resp); len(d) != 0 {
			t.Fatalf("forced removal of an image in use deleted it: %+v", resp)
		}
		got, err := s.Resolve(ctx, img.ID)
		if err != nil || len(got.RepoTags) != 0 {
			t.Fatalf("image after forced untag: %+v, %v", got, err)
		}
		if _, err := s.LowerDirs(ctx, img.ID); err != nil {
			t.Fatalf("lower dirs of the in-use image: %v", err)
		}
	})

	t.Run("ID with tags in two repositories", func(t *testing.T) {
		s := newStore(t)
		img, _ := s.Pull(ctx, p.busybox, PullOptions{})
		if err := s.Tag(ctx, img.ID, "other/repo:x"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Remove(ctx, img.ID[7:19], RemoveOptions{}); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "multiple repositories") {
			t.Fatalf("err = %v", err)
		}
		resp, err := s.Remove(ctx, img.ID, RemoveOptions{Force: true})
		if err != nil {
			t.Fatal(err)
		}
		u, d := deleted(resp)
		if len(u) != 3 || len(d) == 0 || d[0] != img.ID {
			t.Fatalf("resp = %+v", resp)
		}
	})

	t.Run("not found and ambiguous", func(t *testing.T) {
		s := newStore(t)
		if _, err := s.Remove(ctx, "nothere", RemoveOptions{}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("err = %v", err)
		}
	})

	t.Run("shared layers stay", func(t *testing.T) {
		s := newStore(t)
		a, _ := s.Pull(ctx, p.multi, PullOptions{})
		b, _ := s.Pull(ctx, p.layered, PullOptions{})
		resp, err := s.Remove(ctx, p.multi, RemoveOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, d := deleted(resp); len(d) != 2 || d[0] != a.ID {
			t.Fatalf("resp = %+v", resp)
		}
		if _, err := s.LowerDirs(ctx, b.ID); err != nil {
			t.Fatal(err)
		}
	})
}

func TestPrune(t *testing.T) {
	p := pushTestImages(t, imagetest.RegistryOptions{})
	ctx := context.Background()
	s := newStore(t)
	bb, _ := s.Pull(ctx, p.busybox, PullOptions{})
	lay, _ := s.Pull(ctx, p.layered, PullOptions{})
	multi, _ := s.Pull(ctx, p.multi, PullOptions{})
	// Make multi dangling: untag (its digest reference stays).
	if _, err := s.Remove(ctx, p.multi, RemoveOptions{InUse: func(string) bool { return true }, Force: true}); err != nil {
		t.Fatal(err)
	}
	if err := s.Tag(ctx, lay.ID, "keep:me"); err != nil {
		t.Fatal(err)
	}
	rep, err := s.Prune(ctx, PruneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, d := deleted(rep.ImagesDeleted); len(d) == 0 || d[0] != multi.ID || rep.SpaceReclaimed == 0 {
		t.Fatalf("dangling prune: %+v", rep)
	}
	if len(s.Images(ctx)) != 2 {
		t.Fatalf("images after dangling prune: %d", len(s.Images(ctx)))
	}
	// label filter: only the layered image has the label; it is in use.
	inUse := func(id string) bool { return id == lay.ID }
	rep, err = s.Prune(ctx, PruneOptions{Filters: Filters{"dangling": {"false"}, "label": {"org.berth.test=layered"}}, InUse: inUse})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.ImagesDeleted) != 0 {
		t.Fatalf("pruned an image in use: %+v", rep)
	}
	rep, err = s.Prune(ctx, PruneOptions{All: true, InUse: inUse})
	if err != nil {
		t.Fatal(err)
	}
	u, d := deleted(rep.ImagesDeleted)
	if !slices.Contains(u, p.busybox) || len(d) == 0 || d[0] != bb.ID {
		t.Fatalf("prune all: %+v", rep)
	}
	if imgs := s.Images(ctx); len(imgs) != 1 || imgs[0].ID != lay.ID {
		t.Fatalf("left: %+v", imgs)
	}
	if _, err := s.Prune(ctx, PruneOptions{Filters: Filters{"bogus": {"1"}}}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad filter: %v", err)
	}
}

func TestListFilters(t *testing.T) {
	p := pushTestImages(t, imagetest.RegistryOptions{})
	ctx := context.Background()
	s := newStore(t)
	bb, _ := s.Pull(ctx, p.busybox, PullOptions{})
	lay, _ := s.Pull(ctx, p.layered, PullOptions{})
	if err := s.Tag(ctx, bb.ID, "alias:1"); err != nil {
		t.Fatal(err)
	}
	ids := func(f Filters) []string {
		t.Helper()
		list, err := s.List(ctx, ListOptions{Filters: f})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, sm := range list {
			out = append(out, sm.ID)
		}
		sort.Strings(out)
		return out
	}
	both := []string{bb.ID, lay.ID}
	sort.Strings(both)
	tests := []struct {
		name string
		f    Filters
		want []string
	}{
		{"none", nil, both},
		{"dangling", Filters{"dangling": {"true"}}, nil},
		{"not dangling", Filters{"dangling": {"false"}}, both},
		{"reference", Filters{"reference": {"alias"}}, []string{bb.ID}},
		{"reference glob", Filters{"reference": {"*/test/lay*"}}, []string{lay.ID}},
		{"label key", Filters{"label": {"maintainer"}}, []string{lay.ID}},
		{"label value", Filters{"label": {"maintainer=nobody"}}, nil},
		{"until", Filters{"until": {"2000-01-01"}}, nil},
	}
	for _, tt := range tests {
		if got := ids(tt.f); !slices.Equal(got, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
	list, _ := s.List(ctx, ListOptions{Filters: Filters{"reference": {"alias"}}})
	if len(list) != 1 || !slices.Equal(list[0].RepoTags, []string{"alias:1"}) {
		t.Errorf("reference filter keeps only matching tags: %+v", list)
	}
	if list[0].Size != bb.Size || list[0].Containers != -1 || list[0].Labels == nil {
		t.Errorf("summary: %+v", list[0])
	}
	if _, err := s.List(ctx, ListOptions{Filters: Filters{"nope": {"x"}}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad filter: %v", err)
	}
}

func TestParseFilters(t *testing.T) {
	tests := []struct {
		in      string
		want    Filters
		wantErr bool
	}{
		{in: "", want: Filters{}},
		{in: `{"dangling":{"true":true}}`, want: Filters{"dangling": {"true"}}},
		{in: `{"label":{"a=b":true,"c":true,"off":false}}`, want: Filters{"label": {"a=b", "c"}}},
		{in: `{"reference":["busybox"]}`, want: Filters{"reference": {"busybox"}}},
		{in: `not json`, wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseFilters(tt.in)
		if tt.wantErr {
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("%s: err = %v", tt.in, err)
			}
			continue
		}
		if err != nil || len(got) != len(tt.want) {
			t.Errorf("%s: %v, %v", tt.in, got, err)
			continue
		}
		for k, v := range tt.want {
			if !slices.Equal(got[k], v) {
				t.Errorf("%s: %s = %v, want %v", tt.in, k, got[k], v)
			}
		}
	}
}

func TestResolve(t *testing.T) {
	p := pushTestImages(t, imagetest.RegistryOptions{})
	ctx := context.Background()
	s := newStore(t)
	img, _ := s.Pull(ctx, p.busybox, PullOptions{})
	if err := s.Tag(ctx, img.ID, "busybox"); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{img.ID, img.ID[7:], img.ID[7:15], "sha256:" + img.ID[7:15], "busybox", "busybox:latest", "docker.io/library/busybox", p.busybox, img.RepoDigests[0]} {
		got, err := s.Resolve(ctx, ref)
		if err != nil || got.ID != img.ID {
			t.Errorf("Resolve(%q) = %v, %v", ref, got.ID, err)
		}
	}
	for _, ref := range []string{"busybox:other", "zzz", "sha256:" + strings.Repeat("0", 64)} {
		if _, err := s.Resolve(ctx, ref); !errors.Is(err, ErrNotFound) {
			t.Errorf("Resolve(%q): %v, want not found", ref, err)
		}
	}
	if err := s.Tag(ctx, img.ID, "x@sha256:"+strings.Repeat("0", 64)); !errors.Is(err, ErrInvalid) {
		t.Errorf("tag with digest: %v", err)
	}
}
