package hostagent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/berthvm/berth/forwarding/portfwd"
	"github.com/berthvm/berth/guestagent/api"
	"github.com/berthvm/berth/hostagent/events"
	"github.com/berthvm/berth/hostagent/instance"
	"github.com/berthvm/berth/kernel"
	"github.com/berthvm/berth/vm"
)

// What the CLI does with instances. These functions print progress for
// people to out; they return errors instead of exiting.

// State names shown by status and list.
const (
	StateRunning  = "Running"
	StateStarting = "Starting"
	StateStopping = "Stopping"
	StateStopped  = "Stopped"
	StateDegraded = "Degraded"
	StateBroken   = "Broken"
	// StateOrphaned is a VM that runs without its host agent (it was
	// killed). "berth start" reattaches to it.
	StateOrphaned = "Running (host agent down)"
)

// InstanceStatus is what "berth status" and "berth list" show.
type InstanceStatus struct {
	Name       string            `json:"name"`
	State      string            `json:"state"`
	Arch       string            `json:"arch,omitempty"`
	CPUs       int               `json:"cpus,omitempty"`
	Memory     string            `json:"memory,omitempty"`
	Disk       string            `json:"disk,omitempty"`
	Driver     string            `json:"driver,omitempty"`
	Dir        string            `json:"dir"`
	AgentPID   int               `json:"hostagentPid,omitempty"`
	Errors     []string          `json:"errors,omitempty"`
	Guest      *events.GuestInfo `json:"guest,omitempty"`
	DockerSock string            `json:"dockerSocket,omitempty"`
	Ports      []portfwd.Forward `json:"ports,omitempty"`
}

// Inspect reports an instance's state without changing it, except that a
// stale pidfile is removed.
func Inspect(ctx context.Context, inst *instance.Instance) *InstanceStatus {
	st := &InstanceStatus{Name: inst.Name, Dir: inst.Dir}
	cfg, err := inst.LoadConfig()
	if err != nil {
		st.State = StateBroken
		st.Errors = []string{err.Error()}
		return st
	}
	st.Arch, st.CPUs, st.Memory, st.Disk = cfg.Arch, cfg.CPUs, cfg.Memory.String(), cfg.Disk.String()
	st.Driver = cfg.Driver
	pid, err := inst.AgentPID()
	if err != nil {
		st.State = StateBroken
		st.Errors = []string{err.Error()}
		return st
	}
	last, _ := events.Last(inst.Path(instance.EventsFile))
	if pid == 0 {
		st.State = StateStopped
		if d, err := inspectDriver(inst, cfg); err == nil && d.Running() {
			st.State = StateOrphaned
		}
		if last != nil && st.State == StateStopped {
			st.Errors = last.Status.Errors
		}
		return st
	}
	st.AgentPID = pid
	s, err := NewClient(inst.Path(instance.ControlSocket)).Status(ctx)
	if err != nil {
		// The agent is alive but not serving yet: it is starting.
		st.State = StateStarting
		if last != nil {
			st.Errors = last.Status.Errors
		}
		return st
	}
	switch {
	case s.Phase == events.Running && s.Degraded:
		st.State = StateDegraded
		st.DockerSock = inst.Path(instance.DockerSocket)
	case s.Phase == events.Running:
		st.State = StateRunning
		st.DockerSock = inst.Path(instance.DockerSocket)
	case s.Phase == events.Starting:
		st.State = StateStarting
	case s.Phase == events.Stopping:
		st.State = StateStopping
	default:
		st.State = StateStopped
	}
	st.Errors, st.Guest, st.Ports = s.Errors, s.Guest, s.Ports
	if st.DockerSock != "" {
		if _, err := os.Stat(st.DockerSock); err != nil {
			st.DockerSock = ""
		}
	}
	return st
}

// StartOptions tune Start.
type StartOptions struct {
	Timeout time.Duration // how long to wait for the guest agent
}

// Start launches the instance's host agent and shows its progress until the
// guest agent answers. An instance whose VM still runs without a host agent
// is reattached, not rebooted.
func Start(ctx context.Context, inst *instance.Instance, out io.Writer, opt StartOptions) error {
	cfg, err := inst.LoadConfig()
	if err != nil {
		return err
	}
	pid, err := inst.AgentPID()
	if err != nil {
		return err
	}
	if pid != 0 {
		st := Inspect(ctx, inst)
		return fmt.Errorf("instance %q is already %s (host agent pid %d); \"berth stop %s\" stops it",
			inst.Name, strings.ToLower(st.State), pid, inst.Name)
	}
	fmt.Fprintf(out, "Starting %q (%s, %d CPUs, %s memory, %s disk)\n", inst.Name, cfg.Arch, cfg.CPUs, cfg.Memory, cfg.Disk)
	evPath := inst.Path(instance.EventsFile)
	offset := events.Size(evPath)
	begin := time.Now()
	proc, err := Launch(inst)
	if err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { proc.Wait(); close(exited) }()

	if opt.Timeout == 0 {
		opt.Timeout = guestTimeout + 30*time.Second
	}
	fctx, cancel := context.WithTimeout(ctx, opt.Timeout)
	defer cancel()
	var final *events.Status
	ferr := make(chan error, 1)
	go func() {
		ferr <- events.Follow(fctx, evPath, offset, func(ev events.Event) bool {
			s := ev.Status
			if s.Step != "" && s.PID == proc.Pid {
				fmt.Fprintf(out, "  ✓ %-34s %5.1fs\n", s.Step, s.Duration.Seconds())
			}
			if s.PID == proc.Pid && (s.Phase == events.Running || s.Phase == events.Stopped) {
				final = &s
				return false
			}
			return true
		})
	}()
	select {
	case err := <-ferr:
		if err != nil {
			return startFailed(inst, out, fmt.Errorf("waiting for %q to start: %w", inst.Name, err))
		}
	case <-exited:
		// Give the follower a moment to read the agent's last words.
		select {
		case <-ferr:
		case <-time.After(500 * time.Millisecond):
			cancel()
			<-ferr
		}
		if final == nil {
			last, _ := events.Last(evPath)
			if last != nil && last.Status.PID == proc.Pid {
				final = &last.Status
			}
		}
		if final == nil || final.Phase != events.Running {
			msg := "the host agent exited"
			if final != nil && len(final.Errors) > 0 {
				msg = final.Errors[len(final.Errors)-1]
			} else if tail := TailLines(inst.Path(instance.LogFile), 5); len(tail) > 0 {
				msg += ": " + strings.Join(tail, "\n")
			}
			return startFailed(inst, out, errors.New(msg))
		}
	}
	if final == nil || final.Phase != events.Running {
		msg := "the host agent stopped"
		if final != nil && len(final.Errors) > 0 {
			msg = final.Errors[len(final.Errors)-1]
		}
		return startFailed(inst, out, errors.New(msg))
	}
	g := final.Guest
	if g != nil {
		fmt.Fprintf(out, "%q is running: guest agent %s, kernel %s %s, in %.1fs\n", inst.Name, g.AgentVersion, g.Kernel, g.Arch, time.Since(begin).Seconds())
	} else {
		fmt.Fprintf(out, "%q is running, in %.1fs\n", inst.Name, time.Since(begin).Seconds())
	}
	return nil
}

// startFailed adds the end of the guest console and a hint to a start error.
func startFailed(inst *instance.Instance, out io.Writer, err error) error {
	serial := inst.Path(instance.SerialLogFile)
	if lines := TailLines(serial, 20); len(lines) > 0 {
		fmt.Fprintf(out, "Last lines of the guest console (%s):\n", serial)
		for _, l := range lines {
			fmt.Fprintf(out, "  | %s\n", l)
		}
	}
	fmt.Fprintf(out, "Hint: \"berth logs %s\" shows the host agent log, \"berth logs --serial %s\" the whole guest console.\n", inst.Name, inst.Name)
	return fmt.Errorf("starting %q failed: %w", inst.Name, err)
}

// Stop stops the instance's VM gracefully and waits for its host agent to
// exit. A VM running without a host agent is stopped directly. force skips
// the guest's shutdown and pulls the plug.
func Stop(ctx context.Context, inst *instance.Instance, out io.Writer, force bool) error {
	cfg, err := inst.LoadConfig()
	if err != nil {
		return err
	}
	pid, err := inst.AgentPID()
	if err != nil {
		return err
	}
	begin := time.Now()
	if pid != 0 && !force {
		evPath := inst.Path(instance.EventsFile)
		offset := events.Size(evPath)
		if err := NewClient(inst.Path(instance.ControlSocket)).Stop(ctx); err != nil {
			return err
		}
		fmt.Fprintf(out, "Stopping %q\n", inst.Name)
		fctx, cancel := context.WithTimeout(ctx, shutdownTimeout+powerBtnTimeout+30*time.Second)
		defer cancel()
		events.Follow(fctx, evPath, offset, func(ev events.Event) bool {
			if ev.Status.Step != "" && ev.Status.Phase == events.Stopped {
				fmt.Fprintf(out, "  ✓ %-34s %5.1fs\n", ev.Status.Step, ev.Status.Duration.Seconds())
			}
			return ev.Status.Phase != events.Stopped
		})
		if !waitProcessGone(fctx, inst) {
			return fmt.Errorf("the host agent of %q did not exit; \"berth stop --force %s\" ends it", inst.Name, inst.Name)
		}
		fmt.Fprintf(out, "%q is stopped, in %.1fs\n", inst.Name, time.Since(begin).Seconds())
		return nil
	}
	if pid != 0 {
		if p, err := os.FindProcess(pid); err == nil {
			p.Kill()
		}
		waitProcessGone(ctx, inst)
	}
	d, err := inspectDriver(inst, cfg)
	if err != nil {
		return err
	}
	if !d.Running() {
		if pid == 0 {
			fmt.Fprintf(out, "%q is not running\n", inst.Name)
		}
		return nil
	}
	if at, ok := d.(vm.Attacher); ok {
		if err := at.Attach(ctx); err != nil && !errors.Is(err, vm.ErrNotRunning) {
			return fmt.Errorf("attaching to the VM of %q: %w", inst.Name, err)
		}
	}
	var c api.AgentClient
	if !force {
		conn, err := DialGuest(d.Transport())
		if err == nil {
			defer conn.Close()
			c = api.NewAgentClient(conn)
		}
		fmt.Fprintf(out, "Stopping %q (its host agent was not running)\n", inst.Name)
	} else {
		fmt.Fprintf(out, "Stopping %q hard\n", inst.Name)
	}
	var how string
	if force {
		how, err = "hard stop", d.Stop(ctx)
	} else {
		how, err = ShutdownVM(ctx, d, c, slog.New(slog.DiscardHandler))
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%q is stopped (%s), in %.1fs\n", inst.Name, how, time.Since(begin).Seconds())
	return nil
}

func waitProcessGone(ctx context.Context, inst *instance.Instance) bool {
	for {
		pid, _ := inst.AgentPID()
		if pid == 0 {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Delete removes an instance and its data disk. A running instance is
// refused unless force, which stops it hard first.
func Delete(ctx context.Context, inst *instance.Instance, out io.Writer, force bool) error {
	st := Inspect(ctx, inst)
	if st.State != StateStopped && st.State != StateBroken {
		if !force {
			return fmt.Errorf("instance %q is %s: stop it first (\"berth stop %s\") or use \"berth delete --force %s\"",
				inst.Name, strings.ToLower(st.State), inst.Name, inst.Name)
		}
		if st.State != StateBroken {
			if err := Stop(ctx, inst, out, true); err != nil {
				return err
			}
		}
	}
	if err := os.RemoveAll(inst.Dir); err != nil {
		return fmt.Errorf("deleting %q: %w", inst.Name, err)
	}
	fmt.Fprintf(out, "Deleted %q\n", inst.Name)
	return nil
}

// GuestClient connects to a running instance's guest agent through its
// host agent.
func GuestClient(ctx context.Context, inst *instance.Instance) (api.AgentClient, func(), error) {
	pid, err := inst.AgentPID()
	if err != nil {
		return nil, nil, err
	}
	if pid == 0 {
		return nil, nil, fmt.Errorf("instance %q is not running (\"berth start %s\" starts it)", inst.Name, inst.Name)
	}
	conn, err := DialGuest(NewClient(inst.Path(instance.ControlSocket)))
	if err != nil {
		return nil, nil, err
	}
	return api.NewAgentClient(conn), func() { conn.Close() }, nil
}

// TailLines returns up to n last lines of a text file.
func TailLines(path string, n int) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > 256<<10 {
		f.Seek(st.Size()-256<<10, io.SeekStart)
	}
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, strings.TrimRight(sc.Text(), "\r"))
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return lines
}

// inspectDriver makes a driver to look at or stop an instance's VM, not to
// boot one: a missing guest bundle must not stop "berth stop".
func inspectDriver(inst *instance.Instance, cfg *instance.Config) (vm.Driver, error) {
	kern, initrd, err := kernel.Find(cfg.Arch)
	if err != nil {
		kern, initrd = inst.Path("kernel.unused"), inst.Path("initrd.unused")
	}
	return newDriver(cfg, VMConfig(inst, cfg, kern, initrd), slog.New(slog.DiscardHandler))
}
