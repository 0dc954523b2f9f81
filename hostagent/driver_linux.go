package hostagent

import (
	"fmt"
	"log/slog"

	"github.com/berthvm/berth/hostagent/instance"
	"github.com/berthvm/berth/vm"
	"github.com/berthvm/berth/vm/qemu"
)

// newDriver picks the VM backend. Linux hosts have QEMU only.
func newDriver(cfg *instance.Config, vcfg vm.Config, log *slog.Logger) (vm.Driver, error) {
	switch cfg.Driver {
	case "", "qemu":
		return qemu.New(vcfg, log)
	default:
		return nil, fmt.Errorf("driver %q is not available on Linux: use qemu", cfg.Driver)
	}
}
