package dockerapi

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/berthvm/berth/images/imagetest"
)

// TestDockerCLI drives the server with the real docker CLI against a
// registry on 127.0.0.1: the image and system commands, end to end.
func TestDockerCLI(t *testing.T) {
	e := startEnv(t, nil)
	reg := imagetest.StartRegistry(t, imagetest.RegistryOptions{})
	busybox := reg.Ref("test/busybox:latest")
	layered := reg.Ref("test/layered:v1")
	reg.Push(t, busybox, imagetest.Busybox(t, runtime.GOARCH))
	layeredDigest := reg.Push(t, layered, imagetest.Layered(t)).String()
	start := time.Now()

	t.Run("version", func(t *testing.T) {
		out := e.mustDocker(t, "version")
		for _, want := range []string{"Server: berth", "0.0.0-test", "API version:      " + APIVersion + " (minimum version " + MinAPIVersion + ")", "linux/" + runtime.GOARCH} {
			if !strings.Contains(out, want) {
				t.Errorf("docker version lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("info", func(t *testing.T) {
		out := e.mustDocker(t, "info")
		for _, want := range []string{"Storage Driver: overlay2", "Operating System: berth", "Name: berth-test",
			fmt.Sprintf("CPUs: %d", runtime.NumCPU()), "Docker Root Dir: " + e.srv.cfg.RootDir, "Images: 0", "Cgroup Version: "} {
			if !strings.Contains(out, want) {
				t.Errorf("docker info lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("pull", func(t *testing.T) {
		out := e.mustDocker(t, "pull", busybox)
		for _, want := range []string{"Pulling from test/busybox", "Pull complete", "Digest: sha256:", "Status: Downloaded newer image for " + busybox} {
			if !strings.Contains(out, want) {
				t.Errorf("docker pull lacks %q:\n%s", want, out)
			}
		}
		list := e.mustDocker(t, "images", "--format", "{{.Repository}}:{{.Tag}}")
		if !strings.Contains(list, busybox) {
			t.Errorf("docker images lacks %s:\n%s", busybox, list)
		}
		// Pulling again is a no-op.
		if out := e.mustDocker(t, "pull", busybox); !strings.Contains(out, "Image is up to date") {
			t.Errorf("second pull:\n%s", out)
		}
	})
	t.Run("pull by digest", func(t *testing.T) {
		ref := reg.Ref("test/layered@" + layeredDigest)
		out := e.mustDocker(t, "pull", ref)
		if !strings.Contains(out, layeredDigest) {
			t.Errorf("docker pull by digest:\n%s", out)
		}
		digests := e.mustDocker(t, "images", "--digests", "--format", "{{.Repository}}@{{.Digest}}")
		if !strings.Contains(digests, reg.Addr+"/test/layered@"+layeredDigest) {
			t.Errorf("docker images --digests lacks the pulled digest:\n%s", digests)
		}
	})
	t.Run("pull missing", func(t *testing.T) {
		_, errOut, err := e.docker(t, nil, "pull", reg.Ref("test/nothing:here"))
		if err == nil || !strings.Contains(errOut, "not found") && !strings.Contains(errOut, "unknown") {
			t.Errorf("pull of a missing image: err=%v stderr=%s", err, errOut)
		}
	})

	img, err := e.store.Resolve(context.Background(), busybox)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("inspect", func(t *testing.T) {
		out := e.mustDocker(t, "image", "inspect", "--format", "{{.Id}} {{.Os}} {{.Architecture}}", busybox)
		if want := img.ID + " linux " + runtime.GOARCH; strings.TrimSpace(out) != want {
			t.Errorf("inspect = %q, want %q", out, want)
		}
		_, errOut, err := e.docker(t, nil, "image", "inspect", "nosuchimage:1")
		if err == nil || !strings.Contains(errOut, "No such image") {
			t.Errorf("inspect of a missing image: %v %s", err, errOut)
		}
	})
	t.Run("history", func(t *testing.T) {
		out := e.mustDocker(t, "history", "--no-trunc", "--format", "{{.ID}}|{{.CreatedBy}}", layered[:strings.LastIndex(layered, ":")]+"@"+layeredDigest)
		if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) < 3 {
			t.Errorf("history has %d lines:\n%s", len(lines), out)
		}
	})
	retagged := reg.Ref("test/retagged:v2")
	t.Run("tag and push", func(t *testing.T) {
		e.mustDocker(t, "tag", busybox, retagged)
		list := e.mustDocker(t, "images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}")
		if !strings.Contains(list, retagged) {
			t.Errorf("docker images lacks the new tag:\n%s", list)
		}
		out := e.mustDocker(t, "push", retagged)
		if !strings.Contains(out, "The push refers to repository ["+reg.Addr+"/test/retagged]") || !strings.Contains(out, "v2: digest: sha256:") {
			t.Errorf("docker push:\n%s", out)
		}
	})
	t.Run("save and load", func(t *testing.T) {
		archive := filepath.Join(t.TempDir(), "bb.tar")
		e.mustDocker(t, "save", "-o", archive, retagged)
		if fi, err := os.Stat(archive); err != nil || fi.Size() < 1024 {
			t.Fatalf("saved archive: %v %v", fi, err)
		}
		out := e.mustDocker(t, "rmi", retagged)
		if !strings.Contains(out, "Untagged: "+retagged) || strings.Contains(out, "Deleted:") {
			t.Errorf("rmi of one of two tags:\n%s", out)
		}
		f, err := os.Open(archive)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		out, errOut, err := e.docker(t, f, "load")
		if err != nil || !strings.Contains(out, "Loaded image: "+retagged) {
			t.Errorf("docker load: %v\n%s\n%s", err, out, errOut)
		}
		if id := strings.TrimSpace(e.mustDocker(t, "image", "inspect", "--format", "{{.Id}}", retagged)); id != img.ID {
			t.Errorf("loaded image ID %s, want %s", id, img.ID)
		}
	})
	t.Run("rmi", func(t *testing.T) {
		e.mustDocker(t, "rmi", retagged)
		out := e.mustDocker(t, "rmi", busybox)
		if !strings.Contains(out, "Untagged: "+busybox) || !strings.Contains(out, "Deleted: "+img.ID) {
			t.Errorf("rmi of the last tag:\n%s", out)
		}
		if _, _, err := e.docker(t, nil, "image", "inspect", img.ID); err == nil {
			t.Errorf("image %s still there after rmi", img.ID)
		}
	})
	t.Run("system df", func(t *testing.T) {
		out := e.mustDocker(t, "system", "df")
		if !strings.Contains(out, "Images") || !strings.Contains(out, "Containers") {
			t.Errorf("docker system df:\n%s", out)
		}
		n := strings.Count(strings.TrimSpace(e.mustDocker(t, "images", "-aq")), "\n") + 1
		if !strings.Contains(out, fmt.Sprintf("Images          %d ", n)) {
			t.Errorf("docker system df does not count %d images:\n%s", n, out)
		}
	})
	t.Run("prune", func(t *testing.T) {
		out := e.mustDocker(t, "image", "prune", "-a", "-f")
		if !strings.Contains(out, "Total reclaimed space:") || !strings.Contains(out, "deleted: sha256:") {
			t.Errorf("docker image prune -a:\n%s", out)
		}
		if left := strings.TrimSpace(e.mustDocker(t, "images", "-aq")); left != "" {
			t.Errorf("images left after prune -a: %q", left)
		}
	})
	t.Run("events", func(t *testing.T) {
		until := time.Now()
		since := fmt.Sprintf("%d", start.Unix())
		out := e.mustDocker(t, "events", "--since", since, "--until", fmt.Sprintf("%d.%09d", until.Unix(), until.Nanosecond()),
			"--format", "{{.Type}} {{.Action}} {{.Actor.ID}} {{index .Actor.Attributes \"name\"}}")
		for _, want := range []string{
			"image pull " + busybox,
			"image tag " + img.ID + " " + retagged,
			"image push " + retagged,
			"image save " + retagged,
			"image untag " + img.ID + " " + retagged,
			"image load " + retagged,
			"image delete " + img.ID,
			"image prune",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("docker events lacks %q:\n%s", want, out)
			}
		}
		tags := e.mustDocker(t, "events", "--since", since, "--until", fmt.Sprintf("%d", until.Unix()+1), "--filter", "event=tag", "--format", "{{.Action}}")
		if got := strings.Fields(tags); len(got) != 1 || got[0] != "tag" {
			t.Errorf("events filtered on tag = %q", got)
		}
		if out := e.mustDocker(t, "events", "--since", since, "--until", fmt.Sprintf("%d", until.Unix()+1), "--filter", "type=container"); strings.TrimSpace(out) != "" {
			t.Errorf("container events where there are none: %q", out)
		}
	})
}

// TestDockerLogin checks `docker login` against an htpasswd registry and
// that the CLI's credentials then reach the registry on pull.
func TestDockerLogin(t *testing.T) {
	e := startEnv(t, nil)
	reg := imagetest.StartRegistry(t, imagetest.RegistryOptions{BasicAuth: true})
	ref := reg.Ref("private/busybox:1")
	reg.Push(t, ref, imagetest.Busybox(t, runtime.GOARCH))

	_, errOut, err := e.docker(t, nil, "pull", ref)
	if err == nil {
		t.Fatalf("anonymous pull from an htpasswd registry succeeded")
	}
	if !strings.Contains(strings.ToLower(errOut), "unauthorized") && !strings.Contains(errOut, "denied") {
		t.Errorf("anonymous pull error: %s", errOut)
	}
	out, errOut, err := e.docker(t, strings.NewReader("wrong-password\n"), "login", "-u", reg.Username, "--password-stdin", reg.Addr)
	if err == nil || strings.Contains(out, "Login Succeeded") {
		t.Errorf("login with a wrong password: err=%v out=%s", err, out)
	}
	if !strings.Contains(errOut, "401") && !strings.Contains(strings.ToLower(errOut), "unauthorized") {
		t.Errorf("login failure message: %s", errOut)
	}
	out, errOut, err = e.docker(t, strings.NewReader(reg.Password+"\n"), "login", "-u", reg.Username, "--password-stdin", reg.Addr)
	if err != nil || !strings.Contains(out, "Login Succeeded") {
		t.Fatalf("login: %v\n%s\n%s", err, out, errOut)
	}
	if out := e.mustDocker(t, "pull", ref); !strings.Contains(out, "Downloaded newer image") {
		t.Errorf("authenticated pull:\n%s", out)
	}
	target := reg.Ref("private/pushed:2")
	e.mustDocker(t, "tag", ref, target)
	if out := e.mustDocker(t, "push", target); !strings.Contains(out, "2: digest: sha256:") {
		t.Errorf("authenticated push:\n%s", out)
	}
}
