//go:build unix

package qemu

import (
	"errors"
	"os/exec"
	"syscall"
)

// detach puts QEMU in a session of its own, so it outlives the host agent
// and no terminal signal reaches it.
func detach(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
}

// processExists reports whether pid names a process, ours or not.
func processExists(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func killProcess(pid int) error {
	return syscall.Kill(pid, syscall.SIGKILL)
}
