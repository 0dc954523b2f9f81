//go:build unix

package hostagent

import (
	"context"

	"github.com/berthvm/berth/hostagent/instance"
	"github.com/berthvm/berth/hostagent/usernet"
	"github.com/berthvm/berth/vm"
	"github.com/berthvm/berth/vm/qemu"
)

// attachQEMUNIC plugs QEMU's NIC into n: QEMU sends frames from its own
// socket in the instance dir to net.sock, which n serves. A VM that is
// still running from an earlier host agent keeps sending to net.sock, so
// the new agent's socket takes over with no reconnection.
func attachQEMUNIC(ctx context.Context, n *usernet.Network, inst *instance.Instance, vcfg *vm.Config) (func(), error) {
	vcfg.NetSocket = inst.Path(instance.NetSocket)
	if err := n.ServeDatagram(ctx, vcfg.NetSocket, qemu.NICPeer(inst.Dir)); err != nil {
		return nil, err
	}
	return func() {}, nil
}
