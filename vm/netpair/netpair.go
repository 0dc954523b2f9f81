// Package netpair makes the connected datagram socket pair that joins an
// in-process VM's NIC to the user-mode network: one end goes to the
// hypervisor (vz's file-handle network attachment), the other to the network
// stack, and each datagram is one Ethernet frame.
//
// It only makes and tunes the pair. It knows nothing of vz, frames or the
// network stack; QEMU, in its own process, reaches the network through a
// socket path instead.
package netpair

// Buffer sizes. Apple's guidance for VZFileHandleNetworkDeviceAttachment is
// SO_RCVBUF at least twice SO_SNDBUF, best four times; the defaults (a few
// KiB on macOS) drop frames under load.
const (
	SendBuffer    = 1 << 20
	ReceiveBuffer = 4 << 20
)
