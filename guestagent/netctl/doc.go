// Package netctl owns container networking inside the guest: the bridge,
// per-container network namespaces and veth pairs, a persistent IPv4 IPAM,
// NAT and published ports (nftables), and the port events the host agent
// uses to forward published ports to the host's localhost.
//
// It does not own container processes (the shim joins the namespace by the
// path that Attach returns), DNS (a later piece), or the host side of port
// forwarding.
//
// The API, in the order the engine uses it:
//
//	m, err := netctl.New(ctx, netctl.Config{StateDir: dir, OnPorts: sink})
//	ep, err := m.Attach(ctx, id, netctl.AttachOptions{Mode: netctl.ModeBridge})
//	// start the container with its network namespace at ep.NetNS
//	ports, err := m.Publish(ctx, id, []netctl.PortBinding{{Proto: "tcp", ContainerPort: 80}})
//	// ports tell NetworkSettings.Ports which host ports were chosen
//	err = m.Unpublish(ctx, id)   // optional; Detach unpublishes too
//	err = m.Detach(ctx, id)      // idempotent
//	err = m.Close()              // leaves containers' networking intact
//
// New is idempotent over an existing setup: after an engine restart it
// finds the bridge, reloads the IPAM and port bindings from StateDir,
// forgets endpoints whose namespace is gone (the VM rebooted), and rewrites
// the nftables table "berth" from that state in one atomic transaction.
//
// Networking modes: ModeBridge (default) puts eth0 on the bridge with an
// address from the IPAM, a default route via the gateway and NAT out of the
// guest; ModeNone is a namespace with only lo; ModeHost uses the guest's
// own namespace (Endpoint.NetNS is empty, nothing is created).
//
// Published ports are nftables DNAT rules (prerouting for traffic from
// outside, output for the guest's own traffic, with route_localnet on the
// bridge and a masquerade so 127.0.0.1:PORT works inside the guest, and a
// hairpin masquerade so a container can reach another through a published
// port). No userland proxy runs. Only IPv4 is handled.
//
// Port events: Config.OnPorts is called (under the manager's lock, so in
// order; it must not block or call back into the Manager) with the ports
// added and removed. BrokerSink adapts it to the control service's event
// broker, and SnapshotEvent builds the full-set event for new subscribers.
//
// ResolvConf builds a container's /etc/resolv.conf from the guest's.
//
// All kernel work is done through netlink and nftables sockets opened in
// Config.NetNS (the guest's namespace when empty), so tests run a Manager
// entirely inside a throwaway namespace.
package netctl
