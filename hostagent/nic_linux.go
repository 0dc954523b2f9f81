package hostagent

import (
	"context"

	"github.com/berthvm/berth/hostagent/instance"
	"github.com/berthvm/berth/hostagent/usernet"
	"github.com/berthvm/berth/vm"
)

// attachNIC plugs the VM's NIC into the user-mode network and fills in
// vcfg's side of it. The returned func releases what the VM held.
func attachNIC(ctx context.Context, n *usernet.Network, inst *instance.Instance, _ *instance.Config, vcfg *vm.Config) (func(), error) {
	return attachQEMUNIC(ctx, n, inst, vcfg)
}
