package qemu

import (
	"runtime"

	"github.com/berthvm/berth/vm"
)

// DetectHost describes the machine this process runs on.
func DetectHost() Host {
	arch, err := vm.ArchFromGo(runtime.GOARCH)
	if err != nil {
		arch = vm.Arch(runtime.GOARCH) // matches no guest: TCG
	}
	return Host{GOOS: runtime.GOOS, Arch: arch, KVM: kvmUsable()}
}
