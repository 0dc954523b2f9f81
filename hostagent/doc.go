// Package hostagent is the per-instance host agent: it boots the VM through
// a vm.Driver, connects to the guest agent, keeps the guest's clock right,
// serves the instance's control socket, records what happens in
// events.jsonl, and stops the VM gracefully. The berth CLI starts it
// detached ("berth hostagent NAME") and talks to it through Client.
//
// It does not know how a VM is booted (package vm) nor how bytes cross into
// the guest (package forwarding/transport).
package hostagent
