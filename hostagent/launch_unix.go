//go:build !windows

package hostagent

import "syscall"

// detached puts the host agent in its own session, so it survives the
// terminal that ran "berth start".
func detached() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setsid: true} }
