package images

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"github.com/moby/moby/api/types/registry"

	"github.com/berthvm/berth/images/imagetest"
)

func TestPush(t *testing.T) {
	p := pushTestImages(t, imagetest.RegistryOptions{BasicAuth: true})
	ctx := context.Background()
	auth := Authenticator(registry.AuthConfig{Username: p.reg.Username, Password: p.reg.Password})
	s := newStore(t)
	img, err := s.Pull(ctx, p.layered, PullOptions{Auth: auth})
	if err != nil {
		t.Fatal(err)
	}
	target := p.reg.Ref("pushed/app:v2")
	if err := s.Tag(ctx, img.ID, target); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Push(ctx, target, PushOptions{}); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("anonymous push: %v, want unauthorized", err)
	}
	rec := &recorder{}
	d, err := s.Push(ctx, target, PushOptions{Auth: auth, Progress: rec.fn})
	if err != nil {
		t.Fatal(err)
	}
	if d != img.Manifest.Digest {
		t.Fatalf("pushed digest %s, want the stored manifest %s", d, img.Manifest.Digest)
	}
	// The blobs were in the registry already (other repository, same
	// registry: mounted or found), so no layer needs "Pushing".
	if !rec.has(t, "The push refers to repository ["+p.reg.Addr+"/pushed/app]") || rec.count("Preparing") != 3 {
		t.Errorf("progress: %q", rec.statuses())
	}
	var aux PushResult
	for _, m := range rec.msgs {
		if m.Aux != nil {
			_ = json.Unmarshal(*m.Aux, &aux)
		}
	}
	if aux.Tag != "v2" || aux.Digest != d.String() || aux.Size == 0 {
		t.Errorf("aux = %+v", aux)
	}
	got, _ := s.Resolve(ctx, img.ID)
	if !slices.Contains(got.RepoDigests, p.reg.Addr+"/pushed/app@"+d.String()) {
		t.Errorf("RepoDigests = %v", got.RepoDigests)
	}

	// A locally made image (commit) uploads its new layer.
	upper := t.TempDir()
	if err := writeFile(upper, "new-file", "content"); err != nil {
		t.Fatal(err)
	}
	c, err := s.Commit(ctx, CommitOptions{Parent: img.ID, UpperDir: upper, Reference: p.reg.Ref("pushed/committed")})
	if err != nil {
		t.Fatal(err)
	}
	rec2 := &recorder{}
	if _, err := s.Push(ctx, p.reg.Ref("pushed/committed"), PushOptions{Auth: auth, Progress: rec2.fn}); err != nil {
		t.Fatal(err)
	}
	if rec2.count("Pushed") != 1 || rec2.count("Layer already exists") != 3 || rec2.count("Pushing") == 0 {
		t.Errorf("progress: %q", rec2.statuses())
	}
	// A fresh store pulls back the same image.
	s2 := newStore(t)
	back, err := s2.Pull(ctx, p.reg.Ref("pushed/committed"), PullOptions{Auth: auth})
	if err != nil {
		t.Fatal(err)
	}
	if back.ID != c.ID {
		t.Fatalf("pulled back %s, pushed %s", back.ID, c.ID)
	}
	if b, ok := readLayerFile(t, s2, back.ID, "new-file"); !ok || b != "content" {
		t.Fatalf("new-file = %q", b)
	}
	if _, err := s.Push(ctx, p.reg.Ref("nothing:here"), PushOptions{Auth: auth}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("push of a missing tag: %v", err)
	}
}
