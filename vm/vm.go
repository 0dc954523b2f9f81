// Package vm defines how berth drives a virtual machine, and holds the
// backends: vm/qemu (Linux; the macOS fallback) and vm/vz (macOS). A backend
// boots the guest bundle with the instance's data disk, serial console,
// shares and NIC, and hands back a transport to the guest agent. It knows
// nothing about containers, docker or port forwarding.
//
// The Driver interface is built from small interfaces. Optional abilities are
// separate interfaces, found with a type assertion.
package vm

import (
	"context"
	"errors"
	"os"

	"github.com/berthvm/berth/forwarding/transport"
)

// Arch is a guest architecture, spelled as uname -m spells it.
type Arch string

const (
	X86_64  Arch = "x86_64"
	AARCH64 Arch = "aarch64"
)

// GoArch is the GOARCH of a guest architecture.
func (a Arch) GoArch() string {
	switch a {
	case X86_64:
		return "amd64"
	case AARCH64:
		return "arm64"
	}
	return string(a)
}

// ArchFromGo maps a GOARCH to a guest architecture.
func ArchFromGo(goarch string) (Arch, error) {
	switch goarch {
	case "amd64":
		return X86_64, nil
	case "arm64":
		return AARCH64, nil
	}
	return "", errors.New("unsupported architecture " + goarch + ": berth guests are x86_64 or aarch64")
}

// Share is a host folder shared into the guest.
type Share struct {
	Tag      string // mount tag the guest uses
	HostPath string
	ReadOnly bool
}

// Config is everything a backend needs to boot one instance.
type Config struct {
	Name        string
	Dir         string // instance directory: backends keep sockets, pid files and logs here
	Arch        Arch
	CPUs        int
	MemoryBytes uint64
	DataDisk    string   // raw sparse disk image, attached as the first virtio-blk disk
	Kernel      string   // kernel image (uncompressed Image on arm64)
	Initrd      string   // initramfs
	Cmdline     []string // kernel arguments; the backend adds its console= and transport
	SerialLog   string   // where the guest console goes
	Shares      []Share
	// NetSocket is the host agent's end of the NIC for a hypervisor in
	// its own process (QEMU): a unix datagram socket frames are sent to
	// (a stream socket on Windows). Empty, with no NetFile, means no NIC.
	NetSocket string
	// NetFile is the VM's end of a connected datagram socket pair
	// (vm/netpair) for a hypervisor in this process (vz). The backend
	// does not close it.
	NetFile *os.File
	MAC     string // NIC MAC address
}

// Lifecycle starts and stops a VM.
type Lifecycle interface {
	// Start boots the VM and returns once the hypervisor runs. Where the
	// backend allows it, the VM outlives the calling process.
	Start(ctx context.Context) error
	// Stop powers the VM off at once, as pulling the plug would.
	Stop(ctx context.Context) error
	// Done is closed when the VM has exited.
	Done() <-chan struct{}
	// Running reports whether this instance's VM is alive, whoever started it.
	Running() bool
}

// GuestAgent connects to the guest agent.
type GuestAgent interface {
	// Transport returns the dialer for guest ports. Dials wait, within their
	// context, until the guest side is up.
	Transport() transport.Dialer
}

// Driver is a VM backend.
type Driver interface {
	Lifecycle
	GuestAgent
	// Name names the backend: qemu, vz.
	Name() string
}

// Attacher is a backend whose VMs outlive their host agent. Attach takes
// over a VM that is still running; it returns ErrNotRunning when none is.
type Attacher interface {
	Attach(ctx context.Context) error
}

// PowerButton is a backend that can press the guest's ACPI power button.
type PowerButton interface {
	PressPowerButton(ctx context.Context) error
}

// ErrNotRunning means the instance has no running VM.
var ErrNotRunning = errors.New("vm is not running")
