package netpair

import (
	"os"
	"syscall"
)

// The *BUFFORCE options pass net.core.{w,r}mem_max for CAP_NET_ADMIN.
const (
	soSndbufForce = syscall.SO_SNDBUFFORCE
	soRcvbufForce = syscall.SO_RCVBUFFORCE
)

func socketpair() ([2]int, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return fds, os.NewSyscallError("socketpair", err)
	}
	return fds, nil
}
