package qemu

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
)

const (
	processQueryLimitedInformation = 0x1000
	stillActive                    = 259
	createNewProcessGroup          = 0x00000200
	detachedProcess                = 0x00000008
)

// detach starts QEMU without a console and outside the host agent's process
// group, so it outlives the host agent and no Ctrl-C reaches it.
func detach(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{
		CreationFlags: createNewProcessGroup | detachedProcess,
		HideWindow:    true,
	}
}

// processExists reports whether pid names a live process.
func processExists(pid int) bool {
	h, err := syscall.OpenProcess(processQueryLimitedInformation, false, uint32(pid))
	if err != nil {
		// Access denied means it exists but is not ours.
		return errors.Is(err, syscall.ERROR_ACCESS_DENIED)
	}
	defer syscall.CloseHandle(h)
	var code uint32
	if err := syscall.GetExitCodeProcess(h, &code); err != nil {
		return false
	}
	return code == stillActive
}

func killProcess(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Kill()
}

// processCmdline fails with errNoCmdline: reading another process's command
// line needs its PEB, which berth does not do. On Windows a live pid from the
// pidfile is trusted.
func processCmdline(int) (string, error) { return "", errNoCmdline }
