package hostagent

import (
	"context"
	"fmt"
	"net"

	"github.com/berthvm/berth/hostagent/instance"
	"github.com/berthvm/berth/hostagent/usernet"
	"github.com/berthvm/berth/vm"
	"github.com/berthvm/berth/vm/netpair"
)

// attachNIC plugs the VM's NIC into the user-mode network and fills in
// vcfg's side of it. vz, in this process, gets one end of a datagram
// socket pair; QEMU a socket path. The returned func releases what the
// VM held.
func attachNIC(ctx context.Context, n *usernet.Network, inst *instance.Instance, cfg *instance.Config, vcfg *vm.Config) (func(), error) {
	if cfg.Driver == "qemu" {
		return attachQEMUNIC(ctx, n, inst, vcfg)
	}
	return attachPairNIC(ctx, n, vcfg)
}

// attachPairNIC gives the VM one end of a socket pair and the network the
// other.
func attachPairNIC(ctx context.Context, n *usernet.Network, vcfg *vm.Config) (func(), error) {
	vmEnd, hostEnd, err := netpair.New()
	if err != nil {
		return nil, err
	}
	hostConn, err := net.FileConn(hostEnd)
	hostEnd.Close()
	if err != nil {
		vmEnd.Close()
		return nil, fmt.Errorf("attaching the NIC: %w", err)
	}
	if err := n.ServeConn(ctx, hostConn); err != nil {
		vmEnd.Close()
		hostConn.Close()
		return nil, err
	}
	vcfg.NetFile = vmEnd
	return func() { vmEnd.Close() }, nil
}
