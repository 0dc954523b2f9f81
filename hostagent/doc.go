// Package hostagent is the per-instance host agent: it boots the VM through
// a vm.Driver with its NIC on the user-mode network (usernet), connects to
// the guest agent, keeps the guest's clock right, serves the instance's
// control socket and docker.sock, forwards the ports the guest publishes
// (forwarding/portfwd, fed by the guest's port events), records what
// happens in events.jsonl, and stops the VM gracefully. The berth CLI
// starts it detached ("berth hostagent NAME") and talks to it through
// Client.
//
// It does not know how a VM is booted (package vm), how bytes cross into
// the guest (package forwarding/transport) or which ports exist (the
// guest says).
package hostagent
