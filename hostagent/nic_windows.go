package hostagent

import (
	"context"

	"github.com/berthvm/berth/hostagent/instance"
	"github.com/berthvm/berth/hostagent/usernet"
	"github.com/berthvm/berth/vm"
)

// attachNIC plugs QEMU's NIC into the user-mode network through a stream
// socket (Windows has no unix datagram sockets). QEMU 7.2's stream netdev
// does not reconnect, so a VM outliving its host agent loses its network
// until it restarts; newer QEMUs are not asked to reconnect yet.
func attachNIC(ctx context.Context, n *usernet.Network, inst *instance.Instance, _ *instance.Config, vcfg *vm.Config) (func(), error) {
	vcfg.NetSocket = inst.Path(instance.NetSocket)
	if err := n.ServeStream(ctx, vcfg.NetSocket); err != nil {
		return nil, err
	}
	return func() {}, nil
}
