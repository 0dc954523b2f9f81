package dockerapi

import (
	"context"
	"encoding/json"
	"runtime"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/system"

	"github.com/berthvm/berth/guestagent/engine"
	"github.com/berthvm/berth/images"
	"github.com/berthvm/berth/images/imagetest"
)

// fakeContainers is one running container using image.
type fakeContainers struct {
	engine.Containers // the methods not overridden panic
	image             string
}

func (f *fakeContainers) List(ctx context.Context, opts engine.ListOptions) ([]container.Summary, error) {
	return []container.Summary{{ID: "c0ffee", Names: []string{"/web"}, ImageID: f.image, State: container.StateRunning}}, nil
}

func (f *fakeContainers) Counts(ctx context.Context) engine.Counts {
	return engine.Counts{Total: 1, Running: 1}
}

func (f *fakeContainers) ImageInUse(id string) bool { return id == f.image }

// TestContainersBackend checks what the API asks of engine.Containers:
// images in use are kept, and counts and lists reach info, df and ps.
func TestContainersBackend(t *testing.T) {
	fake := &fakeContainers{}
	e := startEnv(t, func(c *Config) { c.Containers = fake })
	reg := imagetest.StartRegistry(t, imagetest.RegistryOptions{})
	ref := reg.Ref("used/busybox:1")
	reg.Push(t, ref, imagetest.Busybox(t, runtime.GOARCH))
	img, err := e.store.Pull(context.Background(), ref, images.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fake.image = img.ID

	resp, body := e.do(t, "DELETE", "/images/"+img.ID, nil, nil)
	if resp.StatusCode != 409 {
		t.Errorf("rmi of an image in use: %d %s", resp.StatusCode, body)
	}
	if _, body := e.do(t, "POST", "/images/prune?filters="+`{"dangling":{"false":true}}`, nil, nil); strings.Contains(body, img.ID) {
		t.Errorf("prune deleted an image in use: %s", body)
	}
	_, body = e.do(t, "GET", "/v1.50/containers/json?all=1", nil, nil)
	var list []container.Summary
	if err := json.Unmarshal([]byte(body), &list); err != nil || len(list) != 1 || list[0].ID != "c0ffee" {
		t.Errorf("containers/json: %v %s", err, body)
	}
	_, body = e.do(t, "GET", "/info", nil, nil)
	var info system.Info
	if err := json.Unmarshal([]byte(body), &info); err != nil || info.Containers != 1 || info.ContainersRunning != 1 || info.Images != 1 {
		t.Errorf("info: %v %s", err, body)
	}
	_, body = e.do(t, "GET", "/v1.53/system/df", nil, nil)
	var df system.DiskUsage
	if err := json.Unmarshal([]byte(body), &df); err != nil || df.ImageUsage == nil || df.ImageUsage.ActiveCount != 1 || df.ImageUsage.Reclaimable != 0 || df.ContainerUsage == nil || df.ContainerUsage.TotalCount != 1 {
		t.Errorf("system df: %v %s", err, body)
	}
	resp, body = e.do(t, "POST", "/containers/create", strings.NewReader("{}"), nil)
	if resp.StatusCode != 501 || !strings.Contains(body, "not implemented") {
		t.Errorf("container create: %d %s", resp.StatusCode, body)
	}
	out := e.mustDocker(t, "ps", "-a", "--format", "{{.ID}} {{.Names}}")
	if strings.TrimSpace(out) != "c0ffee web" {
		t.Errorf("docker ps: %q", out)
	}
}
