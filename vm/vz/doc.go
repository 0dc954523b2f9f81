// Package vz is berth's macOS backend, on Apple's Virtualization.framework
// through github.com/Code-Hex/vz/v3. The VM lives inside the host agent's
// process, so it does not outlive it and there is no Attach. The guest agent
// is reached over virtio-vsock, folders are shared with virtiofs, and on
// Apple Silicon Rosetta is shared for x86_64 containers.
//
// It does not own the guest bundle, the user-mode network (the host agent
// passes in one end of a vm/netpair socket pair) or what runs on vsock ports.
//
// The package builds only on darwin, except this file. The host agent binary
// must be signed with entitlements.plist (see README.md) or vz refuses to
// start a VM.
package vz

// RosettaTag is the virtiofs tag of the Rosetta share, on Apple Silicon
// hosts where Rosetta for Linux is installed. The guest mounts it and
// registers its rosetta binary with binfmt_misc for x86_64 ELF files.
const RosettaTag = "rosetta"
