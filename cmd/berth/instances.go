package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/berthvm/berth/hostagent"
	"github.com/berthvm/berth/hostagent/dockerctx"
	"github.com/berthvm/berth/hostagent/instance"
)

// nameArg returns the instance named by args[0], or the default one.
func nameArg(args []string) string {
	if len(args) > 0 {
		return args[0]
	}
	return instance.DefaultName
}

// lookup finds an existing instance.
func lookup(name string) (*instance.Instance, error) {
	home, err := instance.Home()
	if err != nil {
		return nil, err
	}
	return instance.Lookup(home, name)
}

func maxArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) > n {
			return usageError{fmt.Errorf("%q takes at most %d argument(s), got %d", cmd.CommandPath(), n, len(args))}
		}
		return nil
	}
}

type startFlags struct {
	cpus       int
	memory     string
	disk       string
	arch       string
	timeout    time.Duration
	useContext bool
}

func (f *startFlags) register(cmd *cobra.Command) {
	cmd.Flags().IntVar(&f.cpus, "cpus", 0, "virtual CPUs (default: up to 4, as many as the host has)")
	cmd.Flags().StringVar(&f.memory, "memory", "", "guest memory, such as 2GiB or 4096MiB (default 2GiB)")
	cmd.Flags().StringVar(&f.disk, "disk", "", "data disk size, such as 64GiB; the disk is sparse and can grow later, never shrink (default 64GiB)")
	cmd.Flags().StringVar(&f.arch, "arch", "", "guest architecture: x86_64 or aarch64 (default: the host's); fixed when the instance is created")
	cmd.Flags().DurationVar(&f.timeout, "timeout", 0, "how long to wait for the guest agent (default 5m30s)")
}

// apply changes cfg by the flags that were set.
func (f *startFlags) apply(cmd *cobra.Command, cfg *instance.Config, created bool) (changed bool, err error) {
	fl := cmd.Flags()
	if fl.Changed("cpus") {
		cfg.CPUs, changed = f.cpus, true
	}
	if fl.Changed("memory") {
		if cfg.Memory, err = instance.ParseSize(f.memory); err != nil {
			return false, usageError{fmt.Errorf("--memory: %w", err)}
		}
		changed = true
	}
	if fl.Changed("disk") {
		d, err := instance.ParseSize(f.disk)
		if err != nil {
			return false, usageError{fmt.Errorf("--disk: %w", err)}
		}
		if !created && d < cfg.Disk {
			return false, usageError{fmt.Errorf("--disk %s is smaller than the instance's disk (%s): disks grow, they never shrink", d, cfg.Disk)}
		}
		cfg.Disk, changed = d, true
	}
	if fl.Changed("arch") {
		if !created && f.arch != cfg.Arch {
			return false, usageError{fmt.Errorf("--arch %s: the instance is %s, and its data disk holds %s images; create another instance for %s", f.arch, cfg.Arch, cfg.Arch, f.arch)}
		}
		cfg.Arch, changed = f.arch, true
	}
	if err := cfg.Validate(); err != nil {
		return false, usageError{err}
	}
	return changed, nil
}

func newStartCmd() *cobra.Command {
	var f startFlags
	cmd := &cobra.Command{
		Use:   "start [NAME]",
		Short: "Create the instance if needed, boot its VM and wait until it answers",
		Long: `Start boots an instance's VM and waits until the guest agent inside it
answers, showing each step with its time. A new instance is created with the
settings given by the flags; for an existing, stopped instance the flags
change its settings (the disk may only grow and the arch is fixed).

When the VM is still running but its host agent is not (it was killed),
start reattaches to the VM without rebooting it.

The instance's Docker API is at $BERTH_HOME/NAME/docker.sock. start
creates or updates a docker context for it, "berth" for the default
instance and "berth-NAME" for the others, in the docker CLI's own
configuration ($DOCKER_CONFIG or ~/.docker); --use-context also makes it
the current context. Other contexts are left alone.

Settings in config.yaml that no flag sets:
  ports:
    bindAll: true   ports published on 0.0.0.0 listen on every host
                    interface, not only on 127.0.0.1 and ::1`,
		Args: maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			home, err := instance.Home()
			if err != nil {
				return err
			}
			inst, err := instance.New(home, nameArg(args))
			if err != nil {
				return usageError{err}
			}
			cfg, err := inst.LoadConfig()
			created := false
			if err != nil {
				if _, serr := os.Stat(inst.Path(instance.ConfigFile)); serr == nil {
					return err // exists but broken
				}
				cfg, created = instance.DefaultConfig(), true
			}
			changed, err := f.apply(cmd, cfg, created)
			if err != nil {
				return err
			}
			if created {
				if err := inst.Create(cfg); err != nil {
					return err
				}
			} else if changed {
				if pid, _ := inst.AgentPID(); pid != 0 {
					return fmt.Errorf("instance %q is running: stop it to change its settings", inst.Name)
				}
				if err := inst.SaveConfig(cfg); err != nil {
					return err
				}
			}
			if err := hostagent.Start(cmd.Context(), inst, cmd.OutOrStdout(), hostagent.StartOptions{Timeout: f.timeout}); err != nil {
				return err
			}
			setupDockerContext(cmd.OutOrStdout(), inst, f.useContext)
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&f.useContext, "use-context", false, "also make the instance's docker context the docker CLI's current one")
	return cmd
}

func newStopCmd() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "stop [NAME]",
		Short: "Shut the instance's VM down gracefully",
		Long: `Stop asks the guest to shut down (its services stop, disks sync and
unmount), then presses the ACPI power button, then pulls the plug, each
after a timeout. --force pulls the plug at once.`,
		Args: maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			inst, err := lookup(nameArg(args))
			if err != nil {
				return err
			}
			return hostagent.Stop(cmd.Context(), inst, cmd.OutOrStdout(), force)
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "power the VM off at once, without a guest shutdown")
	return cmd
}

func newRestartCmd() *cobra.Command {
	var f startFlags
	cmd := &cobra.Command{
		Use:   "restart [NAME]",
		Short: "Stop the instance, then start it again",
		Args:  maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			inst, err := lookup(nameArg(args))
			if err != nil {
				return err
			}
			if err := hostagent.Stop(cmd.Context(), inst, cmd.OutOrStdout(), false); err != nil {
				return err
			}
			if err := hostagent.Start(cmd.Context(), inst, cmd.OutOrStdout(), hostagent.StartOptions{Timeout: f.timeout}); err != nil {
				return err
			}
			setupDockerContext(cmd.OutOrStdout(), inst, false)
			return nil
		},
	}
	cmd.Flags().DurationVar(&f.timeout, "timeout", 0, "how long to wait for the guest agent (default 5m30s)")
	return cmd
}

func printStatuses(cmd *cobra.Command, sts []*hostagent.InstanceStatus, format string) error {
	switch format {
	case "json":
		enc := json.NewEncoder(cmd.OutOrStdout())
		enc.SetIndent("", "  ")
		return enc.Encode(sts)
	case "table", "":
		w := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 3, ' ', 0)
		fmt.Fprintln(w, "NAME\tSTATE\tARCH\tCPUS\tMEMORY\tDISK\tDIR")
		for _, s := range sts {
			fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", s.Name, s.State, s.Arch, s.CPUs, s.Memory, s.Disk, s.Dir)
		}
		if err := w.Flush(); err != nil {
			return err
		}
		for _, s := range sts {
			for _, e := range s.Errors {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: error: %s\n", s.Name, e)
			}
		}
		return nil
	default:
		return usageError{fmt.Errorf("invalid --format %q: use table or json", format)}
	}
}

func newStatusCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "status [NAME]",
		Short: "Show an instance's state, settings and last errors",
		Args:  maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			inst, err := lookup(nameArg(args))
			if err != nil {
				return err
			}
			st := hostagent.Inspect(cmd.Context(), inst)
			if format == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			if err := printStatuses(cmd, []*hostagent.InstanceStatus{st}, format); err != nil {
				return err
			}
			if g := st.Guest; g != nil {
				fmt.Fprintf(cmd.OutOrStdout(), "guest: agent %s, kernel %s %s, transport %s\n", g.AgentVersion, g.Kernel, g.Arch, g.Transport)
			}
			if st.DockerSock != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "docker: unix://%s (context %q)\n", st.DockerSock, dockerctx.Name(st.Name))
			}
			for _, p := range st.Ports {
				state := "on " + strings.Join(p.Listen, ", ")
				if p.Error != "" {
					state = "error: " + p.Error
				}
				fmt.Fprintf(cmd.OutOrStdout(), "port: %s (%s)\n", p.Port, state)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&format, "format", "table", "output format: table or json")
	return cmd
}

func newListCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the instances",
		Args:    maxArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			home, err := instance.Home()
			if err != nil {
				return err
			}
			names, err := instance.List(home)
			if err != nil {
				return err
			}
			sts := []*hostagent.InstanceStatus{}
			for _, n := range names {
				inst, err := instance.New(home, n)
				if err != nil {
					continue
				}
				sts = append(sts, hostagent.Inspect(cmd.Context(), inst))
			}
			return printStatuses(cmd, sts, format)
		},
	}
	cmd.Flags().StringVar(&format, "format", "table", "output format: table or json")
	return cmd
}

func newDeleteCmd() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "delete [NAME]",
		Aliases: []string{"rm"},
		Short:   "Delete a stopped instance and its data disk",
		Long: `Delete removes the instance's directory, including its data disk with every
image, container and volume in it. A running instance is refused unless
--force, which powers it off first.`,
		Args: maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			inst, err := lookup(nameArg(args))
			if err != nil {
				return err
			}
			if err := hostagent.Delete(cmd.Context(), inst, cmd.OutOrStdout(), force); err != nil {
				return err
			}
			removeDockerContext(cmd.OutOrStdout(), inst)
			return nil
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "stop a running instance hard before deleting it")
	return cmd
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print berth's version",
		Args:  maxArgs(0),
		Run: func(cmd *cobra.Command, args []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "berth %s (%s, %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		},
	}
}

func newLogsCmd() *cobra.Command {
	var serial, follow bool
	var lines int
	cmd := &cobra.Command{
		Use:   "logs [NAME]",
		Short: "Show the host agent log, or with --serial the guest console",
		Args:  maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			inst, err := lookup(nameArg(args))
			if err != nil {
				return err
			}
			path := inst.Path(instance.LogFile)
			if serial {
				path = inst.Path(instance.SerialLogFile)
			}
			return showLog(cmd, path, lines, follow)
		},
	}
	cmd.Flags().BoolVar(&serial, "serial", false, "show the guest's serial console instead")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new lines")
	cmd.Flags().IntVarP(&lines, "tail", "n", 200, "lines to show from the end (0: all)")
	return cmd
}

func showLog(cmd *cobra.Command, path string, n int, follow bool) error {
	f, err := os.Open(path)
	if err != nil {
		if os.IsNotExist(err) {
			return fmt.Errorf("%s does not exist yet: the instance has not been started", path)
		}
		return err
	}
	defer f.Close()
	out := cmd.OutOrStdout()
	if n > 0 {
		for _, l := range hostagent.TailLines(path, n) {
			fmt.Fprintln(out, l)
		}
		f.Seek(0, 2)
	} else if _, err := io.Copy(out, f); err != nil {
		return err
	}
	if !follow {
		return nil
	}
	buf := make([]byte, 32<<10)
	for {
		k, err := f.Read(buf)
		if k > 0 {
			out.Write(buf[:k])
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		select {
		case <-cmd.Context().Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
	}
}
