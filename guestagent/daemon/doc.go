// Package daemon is berth's container engine: it implements
// engine.Containers on top of the image store (images), the per-container
// shims (guestagent/shim), container networking (guestagent/netctl),
// named volumes (guestagent/volumes), the json-file log reader
// (guestagent/jsonlog) and container filesystem access
// (guestagent/ctrfs), with dockerd's semantics: names and ID prefixes,
// image config merging, HostConfig validation, restart policies with
// backoff, `docker wait` conditions, events, ps filters and inspect.
//
// It owns the containers' records on disk and their lifecycle. It does
// not own HTTP (guestagent/dockerapi), processes, namespaces and cgroups
// (the shim), the bridge, NAT and IPAM (netctl), or image content.
//
// # Layout under Config.Root
//
//	ID/config.v2.json   the container's record and state (atomic writes)
//	ID/hostconfig.json  its HostConfig
//	ID/ID-json.log      its output, written by the shim
//	ID/hostname, hosts, resolv.conf   bind-mounted into the container
//	ID/upper, work      the overlay's writable layer
//	ID/rootfs           the overlay's mount point (mounted by the shim)
//	ID/spec.json, shim.sock, exit.json, ...   the shim's state (see shim)
//	.tmp/               short-lived mounts (volume copy-up, cp of a stopped container)
//
// Containers outlive the engine: Close leaves them running and New
// reconnects to their shims, records the exits that happened meanwhile and
// applies restart policies as dockerd does when it starts.
package daemon
