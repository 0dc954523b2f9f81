package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"

	"github.com/berthvm/berth/guestagent/engine"
	"github.com/berthvm/berth/guestagent/volumes"
	"github.com/berthvm/berth/images"
	"github.com/berthvm/berth/images/imagetest"
)

const testImage = "berthtest/busybox:latest"

// testStores are the stores a test daemon runs on; they outlive one
// Daemon so an engine restart can be simulated.
type testStores struct {
	images *images.Store
	vols   *volumes.Store
	shims  *fakeShims
	events *engine.Events
	root   string
}

func newTestStores(t *testing.T) *testStores {
	t.Helper()
	ctx := context.Background()
	st, err := images.Open(ctx, images.Options{Root: filepath.Join(t.TempDir(), "images"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	tag, _ := name.NewTag(testImage)
	var buf bytes.Buffer
	if err := tarball.MultiWrite(map[name.Tag]v1.Image{tag: imagetest.Busybox(t, runtime.GOARCH)}, &buf); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Load(ctx, &buf, images.LoadOptions{}); err != nil {
		t.Skipf("loading the test image (needs to unpack busybox): %v", err)
	}
	vols, err := volumes.Open(filepath.Join(t.TempDir(), "volumes"), nil)
	if err != nil {
		t.Fatal(err)
	}
	// The shims' sockets live under the root: keep it short.
	root, err := os.MkdirTemp("", "bd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	return &testStores{images: st, vols: vols, shims: newFakeShims(), events: engine.NewEvents(engine.EventsOptions{}), root: root}
}

func (s *testStores) daemon(t *testing.T) *Daemon {
	t.Helper()
	d, err := New(context.Background(), Config{
		Root: s.root, Images: s.images, Volumes: s.vols, Shims: s.shims, Events: s.events,
		HostGatewayIP: "192.168.127.254", Log: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// actions collects the container event actions published from now on.
func (s *testStores) actions(t *testing.T) func() []string {
	_, sub := s.events.Subscribe(time.Time{})
	var mu sync.Mutex
	var got []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m := range sub.C() {
			if m.Type == events.ContainerEventType {
				mu.Lock()
				got = append(got, string(m.Action))
				mu.Unlock()
			}
		}
	}()
	t.Cleanup(sub.Close)
	return func() []string {
		time.Sleep(20 * time.Millisecond)
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), got...)
	}
}

func create(t *testing.T, d *Daemon, name string, hc *container.HostConfig, cmd ...string) string {
	t.Helper()
	if hc == nil {
		hc = &container.HostConfig{}
	}
	r, err := d.Create(context.Background(), engine.CreateOptions{Name: name, Config: &container.Config{Image: testImage, Cmd: cmd}, HostConfig: hc})
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	return r.ID
}

func status(t *testing.T, d *Daemon, name string) container.State {
	t.Helper()
	r, err := d.Inspect(context.Background(), name, false)
	if err != nil {
		t.Fatalf("inspect %s: %v", name, err)
	}
	return *r.State
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestLifecycle(t *testing.T) {
	s := newTestStores(t)
	d := s.daemon(t)
	ctx := context.Background()
	got := s.actions(t)

	id := create(t, d, "web", nil, "sleep", "60")
	if st := status(t, d, "web"); st.Status != "created" || st.Running {
		t.Fatalf("after create: %+v", st)
	}
	if _, err := d.Create(ctx, engine.CreateOptions{Name: "web", Config: &container.Config{Image: testImage, Cmd: []string{"x"}}}); !errors.Is(err, engine.ErrConflict) ||
		!strings.Contains(err.Error(), `The container name "/web" is already in use by container "`+id+`"`) {
		t.Errorf("name conflict: %v", err)
	}
	if _, err := d.Create(ctx, engine.CreateOptions{Config: &container.Config{Image: "nosuch:image"}}); !errors.Is(err, engine.ErrNotFound) || err.Error() != "No such image: nosuch:image" {
		t.Errorf("missing image: %v", err)
	}

	// docker run: attach, then start; the output of the start reaches it.
	var out bytes.Buffer
	attached := make(chan struct{})
	attachDone := make(chan error, 1)
	go func() {
		attachDone <- d.Attach(ctx, "web", engine.AttachOptions{Stdout: &out, Stream: true, OnAttached: func() { close(attached) }})
	}()
	<-attached
	if err := d.Start(ctx, id[:8]); err != nil {
		t.Fatal(err)
	}
	if err := d.Start(ctx, "web"); !errors.Is(err, engine.ErrNotModified) {
		t.Errorf("second start: %v", err)
	}
	st := status(t, d, "web")
	if st.Status != "running" || st.Pid == 0 {
		t.Fatalf("after start: %+v", st)
	}
	fc := s.shims.get(d.dir(id))
	if fc.spec.Process.Args[0] != "sleep" || !strings.Contains(strings.Join(fc.spec.Process.Env, " "), "HOSTNAME="+id[:12]) {
		t.Errorf("spec: %+v", fc.spec.Process)
	}
	hosts, _ := os.ReadFile(fc.spec.Hosts)
	if !strings.Contains(string(hosts), "192.168.127.254\thost.docker.internal host.berth.internal") {
		t.Errorf("hosts:\n%s", hosts)
	}

	// exec
	eid, err := d.ExecCreate(ctx, "web", container.ExecCreateRequest{Cmd: []string{"echo", "hi"}, AttachStdout: true})
	if err != nil {
		t.Fatal(err)
	}
	var eout bytes.Buffer
	if err := d.ExecStart(ctx, eid, engine.ExecStartOptions{Stdout: &eout}); err != nil {
		t.Fatal(err)
	}
	ei, err := d.ExecInspect(ctx, eid)
	if err != nil || ei.ExitCode == nil || *ei.ExitCode != 3 || ei.Running || eout.String() != "[echo hi]\n" {
		t.Errorf("exec: %+v %v %q", ei, err, eout.String())
	}
	if err := d.ExecStart(ctx, eid, engine.ExecStartOptions{}); !errors.Is(err, engine.ErrConflict) {
		t.Errorf("second exec start: %v", err)
	}

	// pause, kill with a signal that does not stop it
	if err := d.Pause(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if err := d.Pause(ctx, "web"); !errors.Is(err, engine.ErrConflict) {
		t.Errorf("pause twice: %v", err)
	}
	if st := status(t, d, "web"); st.Status != "paused" {
		t.Errorf("paused: %+v", st)
	}
	if _, err := d.ExecCreate(ctx, "web", container.ExecCreateRequest{Cmd: []string{"x"}}); !errors.Is(err, engine.ErrConflict) {
		t.Errorf("exec in a paused container: %v", err)
	}
	if err := d.Unpause(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if err := d.Kill(ctx, "web", "USR1"); err != nil {
		t.Fatal(err)
	}
	if err := d.Kill(ctx, "web", "SIGNOPE"); !errors.Is(err, engine.ErrInvalid) {
		t.Errorf("bad signal: %v", err)
	}

	// stop
	wait, err := d.Wait(ctx, "web", container.WaitConditionNextExit)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Stop(ctx, "web", engine.StopOptions{}); err != nil {
		t.Fatal(err)
	}
	if r := <-wait; r.StatusCode != 143 {
		t.Errorf("wait: %+v", r)
	}
	if err := <-attachDone; err != nil || !strings.Contains(out.String(), "attached output") {
		t.Errorf("attach: %v %q", err, out.String())
	}
	if st := status(t, d, "web"); st.Status != "exited" || st.ExitCode != 143 || st.Running {
		t.Errorf("after stop: %+v", st)
	}
	if err := d.Stop(ctx, "web", engine.StopOptions{}); !errors.Is(err, engine.ErrNotModified) {
		t.Errorf("second stop: %v", err)
	}
	if err := d.Kill(ctx, "web", ""); !errors.Is(err, engine.ErrConflict) {
		t.Errorf("kill of a stopped container: %v", err)
	}
	if !fc.deleted {
		t.Error("the shim was not deleted after the exit")
	}
	r := <-mustWait(t, d, "web", container.WaitConditionNotRunning)
	if r.StatusCode != 143 {
		t.Errorf("wait not-running: %+v", r)
	}

	if err := d.Rename(ctx, "web", "site"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.lookup("web"); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("old name still resolves: %v", err)
	}
	if err := d.Remove(ctx, "site", engine.RemoveOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(d.dir(id)); !os.IsNotExist(err) {
		t.Errorf("directory left: %v", err)
	}
	want := "create,attach,start,exec_create: echo hi,exec_start: echo hi,exec_die,pause,unpause,kill,kill,die,stop,rename,destroy"
	if a := strings.Join(got(), ","); a != want {
		t.Errorf("events:\n got %s\nwant %s", a, want)
	}
}

func mustWait(t *testing.T, d *Daemon, name string, cond container.WaitCondition) <-chan container.WaitResponse {
	t.Helper()
	ch, err := d.Wait(context.Background(), name, cond)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

func TestRestartPolicyAndRemove(t *testing.T) {
	s := newTestStores(t)
	d := s.daemon(t)
	ctx := context.Background()

	id := create(t, d, "always", &container.HostConfig{RestartPolicy: container.RestartPolicy{Name: "always"}}, "sh")
	if err := d.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		s.shims.get(d.dir(id)).exitWith(1)
		eventually(t, "a restart", func() bool {
			st := status(t, d, id)
			c := s.shims.get(d.dir(id))
			return st.Status == "running" && !c.isExited()
		})
		r, _ := d.Inspect(ctx, id, false)
		if r.RestartCount != i {
			t.Fatalf("restart count %d, want %d", r.RestartCount, i)
		}
	}
	// A stop is not a failure: no restart.
	if err := d.Stop(ctx, id, engine.StopOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if st := status(t, d, id); st.Status != "exited" {
		t.Errorf("restarted after stop: %+v", st)
	}

	// on-failure:1 gives up after one retry.
	of := create(t, d, "onfail", &container.HostConfig{RestartPolicy: container.RestartPolicy{Name: "on-failure", MaximumRetryCount: 1}}, "sh")
	if err := d.Start(ctx, of); err != nil {
		t.Fatal(err)
	}
	s.shims.get(d.dir(of)).exitWith(1)
	eventually(t, "the retry", func() bool {
		r, _ := d.Inspect(ctx, of, false)
		return r.RestartCount == 1 && r.State.Status == "running" && !s.shims.get(d.dir(of)).isExited()
	})
	s.shims.get(d.dir(of)).exitWith(1)
	eventually(t, "giving up", func() bool { return status(t, d, of).Status == "exited" })
	time.Sleep(300 * time.Millisecond)
	if st := status(t, d, of); st.Status != "exited" || st.ExitCode != 1 {
		t.Errorf("on-failure:1 after two failures: %+v", st)
	}

	// --rm removes the container at its exit; wait removed reports it.
	rm := create(t, d, "", &container.HostConfig{AutoRemove: true}, "true")
	removed := mustWait(t, d, rm, container.WaitConditionRemoved)
	if err := d.Start(ctx, rm); err != nil {
		t.Fatal(err)
	}
	s.shims.get(d.dir(rm)).exitWith(5)
	select {
	case r := <-removed:
		if r.StatusCode != 5 {
			t.Errorf("wait removed: %+v", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the --rm container was not removed")
	}

	// rm of a running container needs force.
	run := create(t, d, "running", nil, "sleep", "1")
	if err := d.Start(ctx, run); err != nil {
		t.Fatal(err)
	}
	if err := d.Remove(ctx, run, engine.RemoveOptions{}); !errors.Is(err, engine.ErrConflict) {
		t.Errorf("rm of a running container: %v", err)
	}
	if err := d.Remove(ctx, run, engine.RemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	// A start that fails leaves the container created, with the error.
	fail := create(t, d, "failing", nil, "nosuch")
	s.shims.failNext = errors.New(`exec: "nosuch": executable file not found in $PATH`)
	if err := d.Start(ctx, fail); !errors.Is(err, engine.ErrInvalid) {
		t.Errorf("failed start: %v", err)
	}
	if st := status(t, d, fail); st.ExitCode != 127 || !strings.Contains(st.Error, "executable file not found") || st.Status != "created" {
		t.Errorf("after a failed start: %+v", st)
	}

	rep, err := d.Prune(ctx, map[string][]string{"label!": {"keep"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.ContainersDeleted) != 3 {
		t.Errorf("prune deleted %v", rep.ContainersDeleted)
	}
	if n := d.Counts(ctx); n.Total != 0 {
		t.Errorf("after prune: %+v", n)
	}
}

func TestEngineRestart(t *testing.T) {
	s := newTestStores(t)
	d1 := s.daemon(t)
	ctx := context.Background()
	start := func(name string, hc *container.HostConfig) string {
		id := create(t, d1, name, hc, "sh")
		if err := d1.Start(ctx, id); err != nil {
			t.Fatal(err)
		}
		return id
	}
	running := start("running", nil)
	always := start("always", &container.HostConfig{RestartPolicy: container.RestartPolicy{Name: "always"}})
	unless := start("unless", &container.HostConfig{RestartPolicy: container.RestartPolicy{Name: "unless-stopped"}})
	dies := start("dies", nil)
	onfail := start("onfail", &container.HostConfig{RestartPolicy: container.RestartPolicy{Name: "on-failure"}})
	never := create(t, d1, "never", &container.HostConfig{RestartPolicy: container.RestartPolicy{Name: "always"}}, "sh")
	for _, id := range []string{always, unless} {
		if err := d1.Stop(ctx, id, engine.StopOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	pid := status(t, d1, running).Pid
	d1.Close()
	// While the engine is away, two containers exit.
	s.shims.get(d1.dir(dies)).exitWith(4)
	s.shims.get(d1.dir(onfail)).exitWith(1)

	d2 := s.daemon(t)
	if st := status(t, d2, running); st.Status != "running" || st.Pid != pid {
		t.Errorf("running container after the restart: %+v (pid was %d)", st, pid)
	}
	eventually(t, "always to come back", func() bool { return status(t, d2, always).Status == "running" })
	eventually(t, "dies to be recorded", func() bool { return status(t, d2, dies).Status == "exited" })
	if st := status(t, d2, dies); st.ExitCode != 4 {
		t.Errorf("dies: %+v", st)
	}
	eventually(t, "onfail to be restarted", func() bool {
		r, _ := d2.Inspect(ctx, onfail, false)
		return r.RestartCount == 1 && r.State.Status == "running"
	})
	if st := status(t, d2, unless); st.Status != "exited" {
		t.Errorf("unless-stopped after a manual stop: %+v", st)
	}
	if st := status(t, d2, never); st.Status != "created" {
		t.Errorf("a never started container: %+v", st)
	}
	// The reconnected container is monitored again.
	s.shims.get(d2.dir(running)).exitWith(9)
	eventually(t, "the reconnected container's exit", func() bool { return status(t, d2, running).ExitCode == 9 })
	list, err := d2.List(ctx, engine.ListOptions{All: true, Filters: map[string][]string{"status": {"running"}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 {
		t.Errorf("running after the restart: %d", len(list))
	}
}

func TestUsernsRemap(t *testing.T) {
	s := newTestStores(t)
	ctx := context.Background()
	for _, remap := range []bool{false, true} {
		d, err := New(ctx, Config{
			Root: s.root, Images: s.images, Volumes: s.vols, Shims: s.shims, Events: s.events,
			UsernsRemap: remap, Log: slog.New(slog.DiscardHandler),
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name string
			hc   container.HostConfig
			want bool
		}{
			{"default", container.HostConfig{}, remap},
			{"private", container.HostConfig{UsernsMode: "private"}, true},
			{"host", container.HostConfig{UsernsMode: "host"}, false},
			{"privileged", container.HostConfig{Privileged: true}, false},
		} {
			name := fmt.Sprintf("u%v-%s", remap, tc.name)
			hc := tc.hc
			id := create(t, d, name, &hc, "true")
			if err := d.Start(ctx, id); err != nil {
				t.Fatalf("%s: start: %v", name, err)
			}
			c := s.shims.get(filepath.Join(s.root, id))
			if c == nil {
				t.Fatalf("%s: no shim", name)
			}
			if c.spec.UserNS != tc.want {
				t.Errorf("remap=%v %s: UserNS = %v, want %v", remap, tc.name, c.spec.UserNS, tc.want)
			}
		}
		d.Close()
	}
}
