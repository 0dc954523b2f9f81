package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berthvm/berth/guestagent/api"
	"github.com/berthvm/berth/hostagent"
)

type execFlags struct {
	interactive bool
	tty         bool
	workdir     string
	env         []string
}

func newExecCmd() *cobra.Command {
	var f execFlags
	cmd := &cobra.Command{
		Use:   "exec NAME -- COMMAND [ARG...]",
		Short: "Run a command in the instance's VM",
		Long: `Exec runs a command in the VM (not in a container) as root. Its exit code
becomes berth's. -i passes standard input; -t gives it a terminal.`,
		Example: `  berth exec default -- uname -a
  berth exec -it default -- sh`,
		Args: func(cmd *cobra.Command, args []string) error {
			// Flags stop at the instance name, so a "--" after it is ours
			// to drop (RunE drops it); one before it cobra already removed.
			if len(args) < 2 || len(args) == 2 && args[1] == "--" {
				return usageError{fmt.Errorf("exec needs an instance name and a command: berth exec NAME -- COMMAND")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			argv := args[1:]
			if argv[0] == "--" {
				argv = argv[1:]
			}
			return runExec(cmd, args[0], argv, f)
		},
	}
	cmd.Flags().SetInterspersed(false)
	cmd.Flags().BoolVarP(&f.interactive, "interactive", "i", false, "pass standard input to the command")
	cmd.Flags().BoolVarP(&f.tty, "tty", "t", false, "give the command a terminal")
	cmd.Flags().StringVarP(&f.workdir, "workdir", "w", "", "working directory in the VM")
	cmd.Flags().StringArrayVarP(&f.env, "env", "e", nil, "set an environment variable (KEY=VALUE)")
	return cmd
}

func newShellCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "shell [NAME]",
		Short: "Open a shell in the instance's VM",
		Args:  maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tty := term.IsTerminal(int(os.Stdin.Fd()))
			return runExec(cmd, nameArg(args), []string{"/bin/sh", "-l"}, execFlags{interactive: true, tty: tty})
		},
	}
	return cmd
}

func runExec(cmd *cobra.Command, name string, argv []string, f execFlags) error {
	inst, err := lookup(name)
	if err != nil {
		return err
	}
	client, closeFn, err := hostagent.GuestClient(cmd.Context(), inst)
	if err != nil {
		return err
	}
	defer closeFn()
	o := hostagent.ExecOptions{
		Argv: argv, Env: f.env, Workdir: f.workdir, Tty: f.tty,
		Stdout: os.Stdout, Stderr: os.Stderr,
	}
	if f.interactive {
		o.Stdin = os.Stdin
	}
	if f.tty {
		fd := int(os.Stdin.Fd())
		if term.IsTerminal(fd) {
			old, err := term.MakeRaw(fd)
			if err != nil {
				return fmt.Errorf("setting the terminal to raw mode: %w", err)
			}
			defer term.Restore(fd, old)
		}
		if w, h, err := term.GetSize(int(os.Stdout.Fd())); err == nil {
			o.Size = &api.WindowSize{Rows: uint32(h), Cols: uint32(w)}
		}
		resize := make(chan *api.WindowSize, 1)
		stop := watchResize(int(os.Stdout.Fd()), resize)
		defer stop()
		o.Resize = resize
		if o.Env == nil || !hasEnv(o.Env, "TERM") {
			if t := os.Getenv("TERM"); t != "" {
				o.Env = append(o.Env, "TERM="+t)
			}
		}
	}
	code, err := hostagent.Exec(cmd.Context(), client, o)
	if status.Code(errors.Unwrap(err)) == codes.NotFound {
		// As a shell does: 127 for a command that is not there.
		fmt.Fprintf(os.Stderr, "berth: %s\n", status.Convert(errors.Unwrap(err)).Message())
		return exitError{127}
	}
	if err != nil {
		return err
	}
	if code != 0 {
		return exitError{code}
	}
	return nil
}

func hasEnv(env []string, key string) bool {
	for _, e := range env {
		if len(e) > len(key) && e[:len(key)+1] == key+"=" {
			return true
		}
	}
	return false
}
