package netctl

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
)

// Errors returned by the Manager; test them with errors.Is.
var (
	// ErrPortAllocated: the host port is already published by a container
	// (Docker says "port is already allocated") or in use in the guest.
	ErrPortAllocated = errors.New("port is already allocated")
	// ErrInvalid: a bad argument (mode, protocol, address, port).
	ErrInvalid = errors.New("invalid argument")
	// ErrNotFound: no endpoint for that container.
	ErrNotFound = errors.New("no such network endpoint")
	// ErrExhausted: the subnet has no free address, or no free host port.
	ErrExhausted = errors.New("no free address or port")
)

// Mode is a container's networking mode, as Docker's HostConfig.NetworkMode.
type Mode string

// Modes.
const (
	ModeBridge Mode = "bridge"
	ModeNone   Mode = "none"
	ModeHost   Mode = "host"
)

// Defaults for Config.
const (
	DefaultBridge = "berth0"
	DefaultSubnet = "172.17.0.0/16"
	// DefaultMTU matches gvisor-tap-vsock's default link MTU.
	DefaultMTU = 1500
)

// Config configures a Manager. Zero values take the defaults.
type Config struct {
	// Bridge is the bridge interface name (default berth0).
	Bridge string
	// Subnet is the containers' IPv4 subnet (default 172.17.0.0/16).
	Subnet string
	// Gateway is the bridge's address (default: the subnet's first host).
	Gateway string
	// StateDir holds state.json (IPAM and port bindings) and netns/ID,
	// the containers' namespace bind mounts. It must survive an engine
	// restart; it may be lost on a VM reboot. Required.
	StateDir string
	// Uplink, when set, restricts masquerading to traffic leaving through
	// that interface. When empty, traffic from the subnet is masqueraded
	// out of any interface but the bridge, which keeps working when the
	// guest's uplink is renamed or a second one appears.
	Uplink string
	// MTU of the bridge and veths (default 1500).
	MTU int
	// NetNS is the path of the namespace to manage (for tests); empty
	// means the caller's own (/proc/self/ns/net).
	NetNS string
	// PortRange is the range for HostPort 0 (default: the namespace's
	// ip_local_port_range, as Docker does).
	PortRange [2]uint16
	// OnPorts receives port events. It is called with the manager's lock
	// held, in order, and must not block or call into the Manager.
	OnPorts func(added, removed []PublishedPort)
	// Log defaults to slog.Default().
	Log *slog.Logger
}

// AttachOptions configures Attach.
type AttachOptions struct {
	// Mode defaults to ModeBridge.
	Mode Mode
	// MAC overrides the bridge-mode MAC (default derived from the IP,
	// 02:42:xx:xx:xx:xx, as Docker does).
	MAC net.HardwareAddr
}

// Endpoint is a container's network attachment.
type Endpoint struct {
	ContainerID string
	Mode        Mode
	// NetNS is the namespace path for the shim; empty in ModeHost.
	NetNS string
	// The following are set in ModeBridge only.
	IP        netip.Addr
	PrefixLen int
	Gateway   netip.Addr
	MAC       net.HardwareAddr
	// HostVeth is the bridge-side veth name.
	HostVeth string
	// Bridge is the bridge name.
	Bridge string
}

// PortBinding is one port to publish, as in HostConfig.PortBindings.
type PortBinding struct {
	// Proto is "tcp" (default) or "udp".
	Proto string
	// HostIP is the guest address to publish on; "" or 0.0.0.0 means all.
	HostIP string
	// HostPort 0 picks a free port from the ephemeral range (docker -P).
	HostPort uint16
	// ContainerPort is the port inside the container.
	ContainerPort uint16
}

// PublishedPort is a binding that is in effect.
type PublishedPort struct {
	ContainerID   string
	Proto         string
	HostIP        string // "0.0.0.0" when published on all addresses
	HostPort      uint16
	ContainerIP   netip.Addr
	ContainerPort uint16
}

func (p PublishedPort) String() string {
	return fmt.Sprintf("%s:%d->%s:%d/%s", p.HostIP, p.HostPort, p.ContainerIP, p.ContainerPort, p.Proto)
}
