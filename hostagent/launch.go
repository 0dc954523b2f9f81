package hostagent

import (
	"fmt"
	"os"
	"os/exec"

	"github.com/berthvm/berth/hostagent/instance"
)

// Launch starts "berth hostagent NAME" detached from the caller, with its
// output appended to the instance's hostagent.log. It returns the process
// without waiting for it.
func Launch(inst *instance.Instance) (*os.Process, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding the berth binary: %w", err)
	}
	logf, err := os.OpenFile(inst.Path(instance.LogFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening the host agent log: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(exe, "hostagent", inst.Name)
	cmd.Stdin = nil
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.Dir = inst.Dir
	cmd.SysProcAttr = detached()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the host agent: %w", err)
	}
	return cmd.Process, nil
}
