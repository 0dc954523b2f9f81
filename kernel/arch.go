package kernel

import (
	"debug/elf"
	"fmt"
)

// Arch describes one guest architecture and how Debian and the toolchain
// spell it.
type Arch struct {
	// Name is the uname -m spelling used in bundle paths: x86_64, aarch64.
	Name string
	// GOARCH is Go's spelling: amd64, arm64.
	GOARCH string
	// Deb is Debian's architecture: amd64, arm64.
	Deb string
	// Flavor is the Debian kernel flavor.
	Flavor string
	// Triplet is the multiarch library directory name.
	Triplet string
	// Loader is the dynamic loader path that the arch's binaries request.
	Loader string
	// Machine is the ELF machine of the arch's binaries.
	Machine elf.Machine
	// Console is the serial console device the kernel writes to.
	Console string
}

var arches = []Arch{
	{
		Name: "x86_64", GOARCH: "amd64", Deb: "amd64", Flavor: FlavorAMD64,
		Triplet: "x86_64-linux-gnu", Loader: "/lib64/ld-linux-x86-64.so.2",
		Machine: elf.EM_X86_64, Console: "ttyS0",
	},
	{
		Name: "aarch64", GOARCH: "arm64", Deb: "arm64", Flavor: FlavorARM64,
		Triplet: "aarch64-linux-gnu", Loader: "/lib/ld-linux-aarch64.so.1",
		Machine: elf.EM_AARCH64, Console: "ttyAMA0",
	},
}

// Arches lists the supported guest architectures.
func Arches() []Arch { return append([]Arch(nil), arches...) }

// LookupArch returns the Arch for a uname (x86_64, aarch64) or Go/Debian
// (amd64, arm64) name.
func LookupArch(name string) (Arch, error) {
	for _, a := range arches {
		if name == a.Name || name == a.GOARCH {
			return a, nil
		}
	}
	return Arch{}, fmt.Errorf("unknown guest architecture %q (want x86_64 or aarch64)", name)
}

// Release is the kernel release (uname -r), the /lib/modules directory name.
func (a Arch) Release() string { return ABI + "-" + a.Flavor }

// KernelPackage is the Debian package holding the kernel and its modules.
func (a Arch) KernelPackage() string { return "linux-image-" + a.Release() }
