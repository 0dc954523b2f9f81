package hostagent

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berthvm/berth/forwarding/portfwd"
	"github.com/berthvm/berth/guestagent/api"
	"github.com/berthvm/berth/hostagent/events"
	"github.com/berthvm/berth/vm"
)

// Backoff between Events subscriptions. The guest agent may be busy or
// restarting; a new subscription gets a fresh snapshot.
var (
	eventsRetryMin = 100 * time.Millisecond
	eventsRetryMax = 5 * time.Second
)

// startPorts starts forwarding the guest's published ports: it follows
// the guest's port events and keeps a Forwarder in step with them, until
// ctx ends. Close the forwarder it returns after ctx ends.
func (a *Agent) startPorts(ctx context.Context, d vm.Driver, client api.AgentClient, bindAll bool) *portfwd.Forwarder {
	var fwd *portfwd.Forwarder
	fwd = portfwd.NewForwarder(d.Transport(), portfwd.Options{
		BindAll:  bindAll,
		Log:      a.log.With("component", "ports"),
		OnChange: func() { a.portsChanged(fwd) },
	})
	a.mu.Lock()
	a.fwd = fwd
	a.mu.Unlock()
	go a.followPortEvents(ctx, client, fwd)
	return fwd
}

// followPortEvents subscribes to the guest's events and applies the port
// events, subscribing again whenever the stream breaks. Each subscription
// starts with a snapshot of every published port, which replaces the
// forwarded set: that is how forwards come back after a host agent
// restart, and how missed events are made good.
func (a *Agent) followPortEvents(ctx context.Context, client api.AgentClient, fwd *portfwd.Forwarder) {
	wait := eventsRetryMin
	for ctx.Err() == nil {
		stream, err := client.Events(ctx, &api.EventsRequest{}, grpc.WaitForReady(true))
		for err == nil {
			var ev *api.Event
			if ev, err = stream.Recv(); err == nil {
				wait = eventsRetryMin
				a.applyEvent(fwd, ev)
			}
		}
		if ctx.Err() != nil {
			return
		}
		if status.Code(err) == codes.Unimplemented {
			a.log.Warn("the guest agent does not stream events; published ports are not forwarded", "err", err)
			wait = time.Minute
		} else {
			a.log.Debug("guest events stream ended; subscribing again", "err", err, "in", wait)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(wait*2, eventsRetryMax)
	}
}

// applyEvent applies one guest event to the forwarder.
func (a *Agent) applyEvent(fwd *portfwd.Forwarder, ev *api.Event) {
	if n := ev.GetNotice(); n != "" {
		a.log.Info("guest notice", "notice", n)
		return
	}
	pe := ev.GetPorts()
	if pe == nil {
		return
	}
	if pe.GetSnapshot() {
		fwd.Sync(a.convertPorts(pe.GetAdded()))
		return
	}
	for _, p := range a.convertPorts(pe.GetRemoved()) {
		fwd.Remove(p)
	}
	for _, p := range a.convertPorts(pe.GetAdded()) {
		fwd.Add(p)
	}
}

// convertPorts maps the guest's ports to the forwarder's, dropping (and
// logging) malformed ones.
func (a *Agent) convertPorts(ps []*api.Port) []portfwd.Port {
	out := make([]portfwd.Port, 0, len(ps))
	for _, p := range ps {
		if p.GetHostPort() > 65535 || p.GetGuestPort() > 65535 {
			a.log.Warn("ignoring a published port out of range", "port", p.String())
			continue
		}
		out = append(out, portfwd.Port{
			Proto:     p.GetProtocol(),
			HostIP:    p.GetHostIp(),
			HostPort:  uint16(p.GetHostPort()),
			GuestIP:   p.GetGuestIp(),
			GuestPort: uint16(p.GetGuestPort()),
		})
	}
	return out
}

// portsChanged records the forwards in the status and the event log. A
// port that cannot be forwarded is an error of the instance, which is
// then Degraded: it runs, but not all of it works.
func (a *Agent) portsChanged(fwd *portfwd.Forwarder) {
	list := fwd.List()
	a.mu.Lock()
	if a.fwd != fwd {
		a.mu.Unlock()
		return // a stopped forwarder's late notice
	}
	prev := a.lastPorts
	a.lastPorts = list
	oldErrs := a.portErrs
	var errs []string
	for _, f := range list {
		if f.Error != "" {
			errs = append(errs, fmt.Sprintf("forwarding %s: %s", f.Port, f.Error))
		}
	}
	a.portErrs = errs
	dockerDown := a.dockerDown
	a.mu.Unlock()

	msg := describePortChanges(prev, list)
	a.emit(func(s *events.Status) {
		s.Ports = list
		s.Errors = append(slices.DeleteFunc(s.Errors, func(e string) bool { return slices.Contains(oldErrs, e) }), errs...)
		s.Degraded = dockerDown || len(errs) > 0
		s.Message = msg
	})
}

// describePortChanges says what changed between two lists of forwards,
// for the event log.
func describePortChanges(prev, now []portfwd.Forward) string {
	find := func(list []portfwd.Forward, p portfwd.Port) *portfwd.Forward {
		for i := range list {
			if list[i].Port == p {
				return &list[i]
			}
		}
		return nil
	}
	var parts []string
	for _, f := range now {
		old := find(prev, f.Port)
		switch {
		case f.Error != "" && (old == nil || old.Error != f.Error):
			parts = append(parts, fmt.Sprintf("cannot forward %s: %s", f.Port, f.Error))
		case f.Error == "" && (old == nil || old.Error != ""):
			parts = append(parts, fmt.Sprintf("forwarding %s (listening on %s)", f.Port, strings.Join(f.Listen, ", ")))
		}
	}
	for _, f := range prev {
		if find(now, f.Port) == nil {
			parts = append(parts, "stopped forwarding "+f.Port.String())
		}
	}
	return strings.Join(parts, "; ")
}

// Ports lists the forwarded ports.
func (a *Agent) Ports() []portfwd.Forward {
	a.mu.Lock()
	fwd := a.fwd
	a.mu.Unlock()
	if fwd == nil {
		return []portfwd.Forward{}
	}
	return fwd.List()
}

// stopPorts closes the forwarder, if it still runs, and takes the ports
// and their errors out of the status; the next event carries that.
func (a *Agent) stopPorts() {
	a.mu.Lock()
	fwd := a.fwd
	a.fwd = nil
	oldErrs := a.portErrs
	a.portErrs, a.lastPorts = nil, nil
	a.status.Ports = nil
	a.status.Errors = slices.DeleteFunc(slices.Clone(a.status.Errors), func(e string) bool { return slices.Contains(oldErrs, e) })
	a.status.Degraded = a.dockerDown
	a.mu.Unlock()
	if fwd != nil {
		fwd.Close()
	}
}
