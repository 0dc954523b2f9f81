package hostagent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/berthvm/berth/forwarding/transport"
	"github.com/berthvm/berth/guestagent/api"
	"github.com/berthvm/berth/hostagent/events"
	"github.com/berthvm/berth/hostagent/instance"
	"github.com/berthvm/berth/vm"
)

// fakeGuest is a guest agent for unit tests: a gRPC server on a unix
// socket that answers Info, runs a scripted Exec, and "powers off" on
// Shutdown unless told to ignore it.
type fakeGuest struct {
	api.UnimplementedAgentServer
	vm             *fakeVM
	ignoreShutdown bool
	synced         chan int64
	evs            *fakeEvents // nil: Events is unimplemented
}

func (g *fakeGuest) Info(context.Context, *api.InfoRequest) (*api.InfoResponse, error) {
	return &api.InfoResponse{AgentVersion: "test", Kernel: "6.1-test", Arch: "x86_64", Transport: "unix"}, nil
}

func (g *fakeGuest) SyncTime(_ context.Context, r *api.SyncTimeRequest) (*api.SyncTimeResponse, error) {
	select {
	case g.synced <- r.HostUnixNs:
	default:
	}
	return &api.SyncTimeResponse{}, nil
}

func (g *fakeGuest) Shutdown(context.Context, *api.ShutdownRequest) (*api.ShutdownResponse, error) {
	if !g.ignoreShutdown {
		go func() { time.Sleep(50 * time.Millisecond); g.vm.exit("guest shutdown") }()
	}
	return &api.ShutdownResponse{}, nil
}

// Exec echoes stdin to stdout upper-cased, writes "err" to stderr and
// exits with the length of its first argument.
func (g *fakeGuest) Exec(s grpc.BidiStreamingServer[api.ExecRequest, api.ExecResponse]) error {
	m, err := s.Recv()
	if err != nil {
		return err
	}
	start := m.GetStart()
	if start == nil {
		return errors.New("first message is not start")
	}
	s.Send(&api.ExecResponse{Msg: &api.ExecResponse_Stderr{Stderr: []byte("err")}})
	for {
		m, err := s.Recv()
		if err != nil {
			return err
		}
		if m.GetStdinClose() {
			break
		}
		if b := m.GetStdin(); b != nil {
			s.Send(&api.ExecResponse{Msg: &api.ExecResponse_Stdout{Stdout: bytes.ToUpper(b)}})
		}
	}
	return s.Send(&api.ExecResponse{Msg: &api.ExecResponse_Exit{Exit: &api.ExecExit{Code: int32(len(start.Argv[0]))}}})
}

// fakeVM is a vm.Driver whose "guest" is a fakeGuest in this process.
type fakeVM struct {
	dir      string
	guest    *fakeGuest
	noAnswer bool // never serve the control port

	mu      sync.Mutex
	done    chan struct{}
	how     string
	srv     *grpc.Server
	stopped bool
	pressed bool
}

func (f *fakeVM) Name() string { return "fake" }

func (f *fakeVM) Start(ctx context.Context) error {
	if f.noAnswer {
		return nil
	}
	ln, err := net.Listen("unix", filepath.Join(f.dir, fmt.Sprint(transport.PortControl)))
	if err != nil {
		return err
	}
	f.srv = grpc.NewServer()
	api.RegisterAgentServer(f.srv, f.guest)
	go f.srv.Serve(ln)
	return nil
}

func (f *fakeVM) exit(how string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	select {
	case <-f.done:
		return
	default:
	}
	f.how = how
	if f.srv != nil {
		go f.srv.Stop()
	}
	close(f.done)
}

func (f *fakeVM) Stop(context.Context) error {
	f.mu.Lock()
	f.stopped = true
	f.mu.Unlock()
	f.exit("hard")
	return nil
}

func (f *fakeVM) PressPowerButton(context.Context) error {
	f.mu.Lock()
	f.pressed = true
	f.mu.Unlock()
	return nil // ignored, like a guest without ACPI support
}

func (f *fakeVM) Done() <-chan struct{} { return f.done }

func (f *fakeVM) Running() bool {
	select {
	case <-f.done:
		return false
	default:
		return true
	}
}

func (f *fakeVM) Transport() transport.Dialer {
	return transport.DialerFunc(func(ctx context.Context, port uint32) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "unix", filepath.Join(f.dir, fmt.Sprint(port)))
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			// As the real transports say it.
			return nil, fmt.Errorf("guest port %d is %w (%v)", port, transport.ErrNotListening, err)
		}
		return c, err
	})
}

var _ vm.Driver = (*fakeVM)(nil)
var _ vm.PowerButton = (*fakeVM)(nil)

func setup(t *testing.T) (*instance.Instance, *fakeVM) {
	t.Helper()
	// Short paths: unix sockets are limited to 108 bytes.
	home, err := os.MkdirTemp("", "bt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	bundle := filepath.Join(home, "bundle")
	os.MkdirAll(bundle, 0o755)
	os.WriteFile(filepath.Join(bundle, "kernel"), []byte("k"), 0o644)
	os.WriteFile(filepath.Join(bundle, "initrd"), []byte("i"), 0o644)
	t.Setenv("BERTH_GUEST_DIR", bundle)
	inst, _ := instance.New(home, "t")
	if err := inst.Create(instance.DefaultConfig()); err != nil {
		t.Fatal(err)
	}
	vmdir := filepath.Join(home, "vm")
	os.MkdirAll(vmdir, 0o700)
	f := &fakeVM{dir: vmdir, done: make(chan struct{})}
	f.guest = &fakeGuest{vm: f, synced: make(chan int64, 1)}
	return inst, f
}

func startAgent(t *testing.T, inst *instance.Instance, f *fakeVM) (cancel func(), result chan error) {
	ctx, cancel := context.WithCancel(context.Background())
	result = make(chan error, 1)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	go func() {
		result <- run(ctx, inst, log, func(*instance.Config, vm.Config, *slog.Logger) (vm.Driver, error) { return f, nil })
	}()
	return cancel, result
}

func waitPhase(t *testing.T, inst *instance.Instance, want events.Phase) events.Status {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if last, _ := events.Last(inst.Path(instance.EventsFile)); last != nil && last.Status.Phase == want {
			return last.Status
		}
		time.Sleep(20 * time.Millisecond)
	}
	last, _ := events.Last(inst.Path(instance.EventsFile))
	t.Fatalf("phase %s never came; last event %+v", want, last)
	return events.Status{}
}

func TestAgentLifecycle(t *testing.T) {
	inst, f := setup(t)
	cancel, result := startAgent(t, inst, f)
	defer cancel()
	st := waitPhase(t, inst, events.Running)
	if st.Guest == nil || st.Guest.AgentVersion != "test" || st.PID != os.Getpid() {
		t.Fatalf("running status %+v", st)
	}
	select {
	case <-f.guest.synced:
	case <-time.After(5 * time.Second):
		t.Fatal("the agent did not push the time after boot")
	}
	if _, err := os.Stat(inst.Path(instance.DataDiskFile)); err != nil {
		t.Fatalf("no data disk: %v", err)
	}
	if fi, err := os.Stat(inst.Path(instance.ControlSocket)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("control socket: %v %v", fi, err)
	}

	// The CLI's path: control socket → tunnel → gRPC.
	c := NewClient(inst.Path(instance.ControlSocket))
	s, err := c.Status(context.Background())
	if err != nil || s.Phase != events.Running {
		t.Fatalf("Status = %+v, %v", s, err)
	}
	conn, err := DialGuest(c)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	guest := api.NewAgentClient(conn)
	var out, errb bytes.Buffer
	code, err := Exec(context.Background(), guest, ExecOptions{
		Argv: []string{"seven77"}, Stdin: strings.NewReader("hello"), Stdout: &out, Stderr: &errb,
	})
	if err != nil || code != 7 || out.String() != "HELLO" || errb.String() != "err" {
		t.Fatalf("Exec = %d, %v, stdout %q, stderr %q", code, err, out.String(), errb.String())
	}
	// A tunnel to a port nobody serves fails clearly.
	if _, err := c.DialPort(context.Background(), 4242); err == nil || !strings.Contains(err.Error(), "guest port 4242") {
		t.Fatalf("tunnel to a dead port: %v", err)
	}

	if err := c.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-result:
		if err != nil {
			t.Fatalf("agent returned %v after a clean stop", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("agent did not exit after stop")
	}
	last, _ := events.Last(inst.Path(instance.EventsFile))
	if last.Status.Phase != events.Stopped || !strings.Contains(last.Status.Step, "guest shutdown") || f.stopped {
		t.Fatalf("after stop: %+v (hard stopped: %v)", last.Status, f.stopped)
	}
	if _, err := os.Stat(inst.Path(instance.PidFile)); !os.IsNotExist(err) {
		t.Fatal("pidfile left behind")
	}
}

func TestAgentVMDies(t *testing.T) {
	inst, f := setup(t)
	cancel, result := startAgent(t, inst, f)
	defer cancel()
	waitPhase(t, inst, events.Running)
	f.exit("crash")
	select {
	case err := <-result:
		if err == nil || !strings.Contains(err.Error(), "exited unexpectedly") {
			t.Fatalf("agent returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("agent did not notice the VM died")
	}
	st := waitPhase(t, inst, events.Stopped)
	if len(st.Errors) == 0 || !strings.Contains(st.Errors[0], "exited unexpectedly") {
		t.Fatalf("stopped status %+v", st)
	}
}

func TestAgentHardStopWhenGuestIgnoresShutdown(t *testing.T) {
	old1, old2 := shutdownTimeout, powerBtnTimeout
	shutdownTimeout, powerBtnTimeout = 200*time.Millisecond, 200*time.Millisecond
	defer func() { shutdownTimeout, powerBtnTimeout = old1, old2 }()
	inst, f := setup(t)
	f.guest.ignoreShutdown = true
	cancel, result := startAgent(t, inst, f)
	waitPhase(t, inst, events.Running)
	cancel() // as SIGTERM would
	select {
	case err := <-result:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("agent did not stop")
	}
	if !f.pressed || !f.stopped {
		t.Fatalf("power button pressed %v, hard stop %v; want both", f.pressed, f.stopped)
	}
	last, _ := events.Last(inst.Path(instance.EventsFile))
	if !strings.Contains(last.Status.Step, "hard stop") {
		t.Fatalf("last event %+v", last.Status)
	}
}

func TestAgentGuestNeverAnswers(t *testing.T) {
	inst, f := setup(t)
	f.noAnswer = true
	_, result := startAgent(t, inst, f)
	time.Sleep(300 * time.Millisecond)
	f.exit("panic")
	select {
	case err := <-result:
		if err == nil || !strings.Contains(err.Error(), "exited before its guest agent answered") {
			t.Fatalf("agent returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("agent kept waiting for a dead VM")
	}
}
