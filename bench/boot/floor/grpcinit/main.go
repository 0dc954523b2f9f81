// Command grpcinit is a reference floor of the boot benchmark: a Go init
// that links gRPC and the guest agent's control API, as any agent that
// answers the host over gRPC must, and powers off before doing anything.
// Its extra time over goinit is what initializing those packages costs.
package main

import (
	"syscall"

	_ "github.com/berthvm/berth/guestagent/api"
	_ "google.golang.org/grpc"
)

func main() {
	syscall.Sync()
	syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
}
