//go:build linux

package integration

import (
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/berthvm/berth/images/imagetest"
)

// TestImages drives the image commands through the docker CLI: pull (by
// tag, by digest, of a multi-arch index, with basic auth), images and its
// filters, image inspect, history, tag, rmi, commit and diff, save and
// load, push, and prune. The images are built by the test and served by
// registries that run on 127.0.0.1 of the engine's network namespace.
// The subtests share the engine and run in order.
func TestImages(t *testing.T) {
	e := newEnv(t)
	reg := e.registry(t, imagetest.RegistryOptions{})
	bb := imagetest.Busybox(t, runtime.GOARCH)
	bbRepo := reg.Addr + "/berthtest/busybox"
	bbRef := bbRepo + ":1"
	bbDigest := reg.Push(t, bbRef, bb).String()
	layRef := reg.Ref("berthtest/layered:1")
	reg.Push(t, layRef, imagetest.Layered(t))

	t.Run("pull by tag", func(t *testing.T) {
		out := e.must(t, "pull", bbRef)
		for _, want := range []string{
			"1: Pulling from berthtest/busybox\n",
			": Pull complete\n",
			"Digest: " + bbDigest + "\n",
			"Status: Downloaded newer image for " + bbRef + "\n",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("pull output lacks %q:\n%s", want, out)
			}
		}
		if !strings.HasSuffix(out, "\n"+bbRef+"\n") {
			t.Errorf("pull does not end with the reference:\n%s", out)
		}
		if out := e.must(t, "pull", bbRef); !strings.Contains(out, "Status: Image is up to date for "+bbRef+"\n") {
			t.Errorf("second pull:\n%s", out)
		}
		if out := e.must(t, "run", "--rm", bbRef, "echo", "pulled"); out != "pulled\n" {
			t.Errorf("run of the pulled image: %q", out)
		}
	})

	t.Run("pull by digest", func(t *testing.T) {
		byDigest := bbRepo + "@" + bbDigest
		if out := e.must(t, "pull", byDigest); !strings.Contains(out, "Digest: "+bbDigest) {
			t.Errorf("pull by digest:\n%s", out)
		}
		if a, b := imageInspect(t, e, bbRef, "{{.Id}}"), imageInspect(t, e, byDigest, "{{.Id}}"); a != b || !strings.HasPrefix(a, "sha256:") {
			t.Errorf("by tag %s, by digest %s", a, b)
		}
		if got := imageInspect(t, e, bbRef, "{{json .RepoDigests}}"); !strings.Contains(got, `"`+byDigest+`"`) {
			t.Errorf("RepoDigests %s lacks %s", got, byDigest)
		}
		if out := e.must(t, "run", "--rm", byDigest, "echo", "by digest"); out != "by digest\n" {
			t.Errorf("run by digest: %q", out)
		}
		code, _, errOut := e.exitCode(t, "pull", bbRepo+"@sha256:"+strings.Repeat("0", 64))
		if code == 0 || !strings.Contains(errOut, "not found") && !strings.Contains(errOut, "manifest unknown") {
			t.Errorf("pull of an unknown digest: exit %d, %q", code, errOut)
		}
	})

	t.Run("layered image", func(t *testing.T) {
		e.must(t, "pull", layRef)
		// Layer 2 whited out /data/gone and made /opq opaque.
		out := e.must(t, "run", "--rm", layRef, "sh", "-c", "ls -A /data; echo --; ls -A /opq; cat /etc/motd; test -e /data/gone || echo gone-absent")
		if out != "keep\n--\nnew\nv2\ngone-absent\n" {
			t.Errorf("layered rootfs: %q", out)
		}
		want := "linux/" + runtime.GOARCH + " 3 /data 1000:1000 layered berth tests"
		if got := imageInspect(t, e, layRef, `{{.Os}}/{{.Architecture}} {{len .RootFS.Layers}} {{.Config.WorkingDir}} {{.Config.User}} {{index .Config.Labels "org.berth.test"}} {{.Author}}`); got != want {
			t.Errorf("inspect: %q, want %q", got, want)
		}
		hist := strings.Split(strings.TrimSpace(e.must(t, "history", "--no-trunc", "--format", "{{.CreatedBy}}|{{.Comment}}|{{.Size}}", layRef)), "\n")
		if len(hist) != 4 || !strings.HasPrefix(hist[0], "COPY greet /usr/local/bin/|last|") || hist[1] != "ENV GREETING=hello||0B" ||
			!strings.HasPrefix(hist[2], "RUN rm /data/gone") || !strings.HasPrefix(hist[3], "ADD busybox /||") {
			t.Errorf("history, newest first:\n%s", strings.Join(hist, "\n"))
		}
	})

	t.Run("multi-arch index", func(t *testing.T) {
		idx := imagetest.MultiArch(t) // skips without the arm64 busybox (make test-inputs)
		ref := reg.Ref("berthtest/multi:1")
		reg.PushIndex(t, ref, idx)
		e.must(t, "pull", ref)
		if got := imageInspect(t, e, ref, "{{.Os}}/{{.Architecture}}"); got != "linux/"+runtime.GOARCH {
			t.Errorf("default platform: %s", got)
		}
		if out := e.must(t, "run", "--rm", ref, "cat", "/etc/arch"); out != runtime.GOARCH+"\n" {
			t.Errorf("/etc/arch: %q", out)
		}
		other, variant := "arm64", "v8"
		if runtime.GOARCH == "arm64" {
			other, variant = "amd64", ""
		}
		e.must(t, "pull", "--platform", "linux/"+other, ref)
		if got := imageInspect(t, e, ref, "{{.Architecture}} {{.Variant}}"); got != strings.TrimSpace(other+" "+variant) {
			t.Errorf("--platform linux/%s: %q", other, got)
		}
	})

	t.Run("basic auth", func(t *testing.T) {
		areg := e.registry(t, imagetest.RegistryOptions{BasicAuth: true})
		ref := areg.Ref("private/busybox:1")
		areg.Push(t, ref, bb)
		code, _, errOut := e.exitCode(t, "pull", ref)
		if code == 0 || !strings.Contains(errOut, "private/busybox") || !regexp.MustCompile(`no basic auth credentials|unauthorized|authentication required`).MatchString(errOut) {
			t.Errorf("pull without credentials: exit %d, %q", code, errOut)
		}
		out, errOut, err := e.docker([]byte("wrong-password\n"), "login", "-u", areg.Username, "--password-stdin", areg.Addr)
		if err == nil || !regexp.MustCompile(`unauthorized|incorrect username or password|401`).MatchString(errOut) {
			t.Errorf("login with a wrong password: %v %q %q", err, out, errOut)
		}
		out, errOut, err = e.docker([]byte(areg.Password+"\n"), "login", "-u", areg.Username, "--password-stdin", areg.Addr)
		if err != nil || !strings.Contains(out, "Login Succeeded") {
			t.Fatalf("login: %v %q %q", err, out, errOut)
		}
		e.must(t, "pull", ref)
		if out := e.must(t, "run", "--rm", ref, "echo", "private"); out != "private\n" {
			t.Errorf("run of the private image: %q", out)
		}
		e.must(t, "logout", areg.Addr)
		e.must(t, "rmi", ref)
		if code, _, errOut := e.exitCode(t, "pull", ref); code == 0 {
			t.Errorf("pull after logout succeeded: %q", errOut)
		}
	})

	// Up to date already, unless -run left the pull subtests out.
	e.must(t, "pull", "-q", bbRef)
	e.must(t, "pull", "-q", layRef)
	bbID := imageInspect(t, e, bbRef, "{{.Id}}")
	layID := imageInspect(t, e, layRef, "{{.Id}}")
	var danglingID, dangleID string

	t.Run("tag and images filters", func(t *testing.T) {
		e.must(t, "tag", bbRef, "berthtest/alias:v2")
		if out := e.must(t, "images", "--format", "{{.Repository}} {{.Tag}} {{.ID}}", "berthtest/alias"); out != "berthtest/alias v2 "+short(bbID)+"\n" {
			t.Errorf("images berthtest/alias: %q", out)
		}
		if got := imageInspect(t, e, "berthtest/alias:v2", "{{json .RepoTags}}"); !strings.Contains(got, `"berthtest/alias:v2"`) || !strings.Contains(got, `"`+bbRef+`"`) {
			t.Errorf("RepoTags: %s", got)
		}
		list := func(args ...string) string {
			t.Helper()
			return e.must(t, append([]string{"images", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"}, args...)...)
		}
		out := list("--filter", "reference="+reg.Addr+"/berthtest/*")
		if !strings.Contains(out, bbRef+" ") || !strings.Contains(out, layRef+" ") || strings.Contains(out, "berthtest/alias") {
			t.Errorf("reference filter:\n%s", out)
		}
		if out := list("--filter", "reference=berthtest/alias"); out != "berthtest/alias:v2 "+bbID+"\n" {
			t.Errorf("reference filter on a name: %q", out)
		}
		for _, f := range []string{"label=org.berth.test=layered", "label=org.berth.test"} {
			if out := e.must(t, "images", "-q", "--no-trunc", "--filter", f); out != layID+"\n" {
				t.Errorf("%s: %q, want the layered image", f, out)
			}
		}
		// Two commits to one tag: the first is left dangling.
		e.must(t, "run", "--name", "dg", bbRef, "sh", "-c", "echo 1 > /f")
		danglingID = strings.TrimSpace(e.must(t, "commit", "-c", "LABEL gen=1", "dg", "berthtest/dangle:1"))
		dangleID = strings.TrimSpace(e.must(t, "commit", "-c", "LABEL gen=2", "dg", "berthtest/dangle:1"))
		e.must(t, "rm", "dg")
		if danglingID == dangleID || !strings.HasPrefix(danglingID, "sha256:") {
			t.Fatalf("commits gave %q and %q", danglingID, dangleID)
		}
		ids := func(args ...string) string {
			t.Helper()
			return e.must(t, append([]string{"images", "-q", "--no-trunc"}, args...)...)
		}
		if out := ids("--filter", "dangling=true"); !strings.Contains(out, danglingID) || strings.Contains(out, dangleID) || strings.Contains(out, bbID) {
			t.Errorf("dangling=true: %q (dangling %s)", out, danglingID)
		}
		if out := ids("--filter", "dangling=false"); strings.Contains(out, danglingID) || !strings.Contains(out, dangleID) {
			t.Errorf("dangling=false: %q", out)
		}
		// since and before compare creation times: the test images all
		// have one, the commits are newer.
		if out := ids("--filter", "since="+bbRef); !strings.Contains(out, dangleID) || strings.Contains(out, bbID) || strings.Contains(out, layID) {
			t.Errorf("since=%s: %q", bbRef, out)
		}
		if out := ids("--filter", "before=berthtest/dangle:1"); !strings.Contains(out, bbID) || !strings.Contains(out, layID) || strings.Contains(out, dangleID) {
			t.Errorf("before=berthtest/dangle:1: %q", out)
		}
		code, _, errOut := e.exitCode(t, "images", "--filter", "colour=red")
		if code == 0 || !strings.Contains(errOut, "invalid filter 'colour'") {
			t.Errorf("bad filter: %d %q", code, errOut)
		}
		if out := e.must(t, "history", "--format", "{{.CreatedBy}}", "berthtest/alias:v2"); out != "ADD busybox /\n" {
			t.Errorf("history of the busybox image: %q", out)
		}
	})

	t.Run("rmi", func(t *testing.T) {
		if dangleID == "" {
			t.Skip("needs the commits of the filters subtest")
		}
		// An image with two tags loses one; the image stays.
		if out := e.must(t, "rmi", "berthtest/alias:v2"); out != "Untagged: berthtest/alias:v2\n" {
			t.Errorf("rmi of one of two tags: %q", out)
		}
		if got := imageInspect(t, e, bbRef, "{{.Id}}"); got != bbID {
			t.Errorf("the image after untagging: %q", got)
		}
		// The only tag of an image a container uses: refused without -f.
		// (dockerd names the container in both messages.)
		cid := strings.TrimSpace(e.must(t, "create", "berthtest/dangle:1", "true"))
		code, _, errOut := e.exitCode(t, "rmi", "berthtest/dangle:1")
		if code == 0 || !strings.Contains(errOut, `conflict: unable to remove repository reference "berthtest/dangle:1" (must force) - container `) || !strings.Contains(errOut, "is using its referenced image "+short(dangleID)) {
			t.Errorf("rmi of an image a container uses: %d %q", code, errOut)
		}
		code, _, errOut = e.exitCode(t, "rmi", dangleID)
		if code == 0 || !strings.Contains(errOut, "conflict: unable to delete "+short(dangleID)+" (must be forced) - image is being used by ") {
			t.Errorf("rmi by ID of an image a stopped container uses: %d %q", code, errOut)
		}
		e.must(t, "rm", cid)
		run := strings.TrimSpace(e.must(t, "run", "-d", "berthtest/dangle:1", "sleep", "60"))
		defer e.must(t, "rm", "-f", run)
		// -f by reference untags it; the image stays for the container.
		if out := e.must(t, "rmi", "-f", "berthtest/dangle:1"); out != "Untagged: berthtest/dangle:1\n" {
			t.Errorf("rmi -f of the reference: %q", out)
		}
		// By ID, -f cannot delete an image a running container uses.
		code, _, errOut = e.exitCode(t, "rmi", "-f", dangleID)
		if code == 0 || !strings.Contains(errOut, "(cannot be forced) - image is being used by running container "+run[:12]) {
			t.Errorf("rmi -f by ID of an image a running container uses: %d %q", code, errOut)
		}
		if got := imageInspect(t, e, dangleID, "{{.Id}}"); got != dangleID {
			t.Errorf("the image of a running container after rmi -f: %q", got)
		}
		if got := strings.TrimSpace(e.must(t, "inspect", "-f", "{{.Image}} {{.State.Running}}", run)); got != dangleID+" true" {
			t.Errorf("the container after rmi -f of its image: %q", got)
		}
		code, _, errOut = e.exitCode(t, "rmi", "berthtest/nosuch:1")
		if code == 0 || !strings.Contains(errOut, "No such image: berthtest/nosuch:1") {
			t.Errorf("rmi of a missing image: %d %q", code, errOut)
		}
	})

	t.Run("commit diff", func(t *testing.T) {
		e.must(t, "run", "--name", "cm", bbRef, "sh", "-c", "echo hi > /hello; rm /etc/group; mkdir /newdir")
		defer e.must(t, "rm", "cm")
		diff := e.must(t, "diff", "cm")
		for _, want := range []string{"A /hello\n", "C /etc\n", "D /etc/group\n", "A /newdir\n"} {
			if !strings.Contains(diff, want) {
				t.Errorf("diff lacks %q:\n%s", want, diff)
			}
		}
		// The CLI sends the reference normalized (docker.io/me/img, v1).
		id := strings.TrimSpace(e.must(t, "commit", "-a", "tester", "-m", "a message", "-c", "ENV FROM_COMMIT=1", "cm", "me/img:v1"))
		if out := e.must(t, "images", "--format", "{{.Repository}} {{.Tag}} {{.ID}}", "me/img"); out != "me/img v1 "+short(id)+"\n" {
			t.Errorf("images me/img: %q", out)
		}
		if got := imageInspect(t, e, "me/img:v1", "{{.Author}}|{{.Comment}}|{{json .RepoTags}}|{{len .RootFS.Layers}}"); got != `tester|a message|["me/img:v1"]|2` {
			t.Errorf("inspect of the commit: %q", got)
		}
		if out := e.must(t, "run", "--rm", "me/img:v1", "sh", "-c", "cat /hello; echo $FROM_COMMIT; test -e /etc/group || echo nogroup"); out != "hi\n1\nnogroup\n" {
			t.Errorf("run of the commit: %q", out)
		}
		if out := e.must(t, "run", "--rm", "docker.io/me/img:v1", "cat", "/hello"); out != "hi\n" {
			t.Errorf("run of the commit by its full name: %q", out)
		}
	})

	t.Run("save load", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "images.tar")
		e.must(t, "save", "-o", path, "me/img:v1", layRef)
		if st, err := os.Stat(path); err != nil || st.Size() < 1<<20 {
			t.Fatalf("saved archive: %v", err)
		}
		id := imageInspect(t, e, "me/img:v1", "{{.Id}}")
		e.must(t, "rmi", "me/img:v1")
		if code, _, _ := e.exitCode(t, "image", "inspect", "me/img:v1"); code == 0 {
			t.Fatal("the image is still there after rmi")
		}
		out := e.must(t, "load", "-i", path)
		if !strings.Contains(out, "Loaded image: me/img:v1\n") || !strings.Contains(out, "Loaded image: "+layRef+"\n") {
			t.Errorf("load: %q", out)
		}
		if got := imageInspect(t, e, "me/img:v1", "{{.Id}}"); got != id {
			t.Errorf("loaded image ID %s, saved %s", got, id)
		}
		if out := e.must(t, "run", "--rm", "me/img:v1", "cat", "/hello"); out != "hi\n" {
			t.Errorf("run of the loaded image: %q", out)
		}
	})

	t.Run("push", func(t *testing.T) {
		ref := reg.Ref("berthtest/pushed:1")
		e.must(t, "tag", "me/img:v1", ref)
		out := e.must(t, "push", ref)
		m := regexp.MustCompile(`(?m)^1: digest: (sha256:[0-9a-f]{64}) size: \d+$`).FindStringSubmatch(out)
		if !strings.Contains(out, "The push refers to repository ["+reg.Addr+"/berthtest/pushed]") || !strings.Contains(out, ": Pushed\n") || m == nil {
			t.Fatalf("push:\n%s", out)
		}
		// The registry has what was pushed, under that digest.
		nref, err := name.ParseReference(ref, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		desc, err := remote.Head(nref, remote.WithTransport(reg.Transport()))
		if err != nil || desc.Digest.String() != m[1] {
			t.Errorf("registry manifest %v (%v), push said %s", desc, err, m[1])
		}
		if out := e.must(t, "push", ref); !strings.Contains(out, "Layer already exists") {
			t.Errorf("second push:\n%s", out)
		}
		e.must(t, "rmi", ref, "me/img:v1")
		out = e.must(t, "pull", ref)
		if !strings.Contains(out, "Digest: "+m[1]) {
			t.Errorf("pull back:\n%s", out)
		}
		if out := e.must(t, "run", "--rm", ref, "cat", "/hello"); out != "hi\n" {
			t.Errorf("run of the pulled back image: %q", out)
		}
	})

	t.Run("prune", func(t *testing.T) {
		if danglingID == "" {
			t.Skip("needs the dangling commit of the filters subtest")
		}
		out := e.must(t, "image", "prune", "-f")
		if !strings.Contains(out, "deleted: "+danglingID) || !strings.Contains(out, "Total reclaimed space:") {
			t.Errorf("image prune:\n%s", out)
		}
		if code, _, _ := e.exitCode(t, "image", "inspect", danglingID); code == 0 {
			t.Error("the dangling image survived the prune")
		}
		if got := imageInspect(t, e, bbRef, "{{.Id}}"); got != bbID {
			t.Errorf("prune removed a tagged image: %q", got)
		}
		// -a: every image no container uses.
		keeper := strings.TrimSpace(e.must(t, "create", layRef, "true"))
		defer e.must(t, "rm", keeper)
		out = e.must(t, "image", "prune", "-a", "-f")
		if !strings.Contains(out, "untagged: "+bbRef) || !strings.Contains(out, "deleted: "+bbID) {
			t.Errorf("image prune -a:\n%s", out)
		}
		left := e.must(t, "images", "-q", "--no-trunc")
		if strings.Contains(left, bbID) || !strings.Contains(left, layID) {
			t.Errorf("after prune -a: %q (layered %s is in use)", left, layID)
		}
	})
}

// imageInspect formats one image with the CLI.
func imageInspect(t *testing.T, e *env, ref, format string) string {
	t.Helper()
	return strings.TrimSpace(e.must(t, "image", "inspect", "--format", format, ref))
}

// short is the 12-digit form of an image ID, as `docker images` shows it.
func short(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
