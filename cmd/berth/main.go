// Command berth runs containers in a small Linux VM and serves the Docker
// API to the host. It is the CLI and, as the hidden "hostagent" command, the
// per-instance host agent that "berth start" launches.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// exitError carries a process exit code out of a command.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRootCmd()
	err := root.ExecuteContext(ctx)
	var ee exitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		os.Exit(ee.code)
	case errors.As(err, new(usageError)), strings.HasPrefix(err.Error(), "unknown command"):
		fmt.Fprintf(os.Stderr, "berth: %v\nRun \"berth --help\" for usage.\n", err)
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "berth: %v\n", err)
		os.Exit(1)
	}
}

// usageError marks errors in how berth was called (exit code 2).
type usageError struct{ error }

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "berth",
		Short: "Run containers in a small, fast Linux VM, with the docker CLI you already have",
		Long: `berth boots a small Linux VM (an "instance") and runs a container engine in
it that speaks the Docker Engine API. The docker CLI and docker-compose on
this host use it through the "berth" docker context.

Instances live in $BERTH_HOME (default ~/.berth), one directory each. Most
commands take an instance NAME and default to "default".`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(
		newStartCmd(), newStopCmd(), newRestartCmd(), newStatusCmd(), newListCmd(),
		newDeleteCmd(), newExecCmd(), newShellCmd(), newLogsCmd(), newVersionCmd(),
		newPortsCmd(), newDockerEnvCmd(), newHostagentCmd(),
	)
	return root
}
