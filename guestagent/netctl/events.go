package netctl

import (
	"time"

	"github.com/berthvm/berth/guestagent/api"
)

// apiPorts converts published ports to the control API's Port: the host
// agent listens on HostIP:HostPort on the host and asks the guest agent
// to dial GuestIP:GuestPort, the container's own address, which needs no
// NAT on the way.
func apiPorts(ps []PublishedPort) []*api.Port {
	out := make([]*api.Port, 0, len(ps))
	for _, p := range ps {
		out = append(out, &api.Port{
			Protocol:  p.Proto,
			HostIp:    p.HostIP,
			HostPort:  uint32(p.HostPort),
			GuestIp:   p.ContainerIP.String(),
			GuestPort: uint32(p.ContainerPort),
		})
	}
	return out
}

// PortEvent builds the control API event for ports added and removed.
func PortEvent(added, removed []PublishedPort) *api.Event {
	return &api.Event{
		TimeUnixNs: time.Now().UnixNano(),
		Kind: &api.Event_Ports{Ports: &api.PortEvent{
			Added:   apiPorts(added),
			Removed: apiPorts(removed),
		}},
	}
}

// SnapshotEvent builds the event that gives a new subscriber the full set
// of published ports (PortEvent.snapshot).
func SnapshotEvent(all []PublishedPort) *api.Event {
	ev := PortEvent(all, nil)
	ev.GetPorts().Snapshot = true
	return ev
}

// BrokerSink adapts publish (control.Broker's Publish method) to
// Config.OnPorts:
//
//	netctl.Config{OnPorts: netctl.BrokerSink(ctl.Broker().Publish)}
func BrokerSink(publish func(*api.Event)) func(added, removed []PublishedPort) {
	return func(added, removed []PublishedPort) { publish(PortEvent(added, removed)) }
}
