package hostagent

import (
	"fmt"
	"log/slog"

	"github.com/berthvm/berth/hostagent/instance"
	"github.com/berthvm/berth/vm"
	"github.com/berthvm/berth/vm/qemu"
	"github.com/berthvm/berth/vm/vz"
)

// newDriver picks the VM backend: Virtualization.framework by default,
// QEMU with HVF when the config asks for it.
func newDriver(cfg *instance.Config, vcfg vm.Config, log *slog.Logger) (vm.Driver, error) {
	switch cfg.Driver {
	case "", "vz":
		return vz.New(vcfg, log)
	case "qemu":
		return qemu.New(vcfg, log)
	default:
		return nil, fmt.Errorf("driver %q is not available on macOS: use vz or qemu", cfg.Driver)
	}
}
