package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/berthvm/berth/forwarding/portfwd"
	"github.com/berthvm/berth/hostagent"
	"github.com/berthvm/berth/hostagent/dockerctx"
	"github.com/berthvm/berth/hostagent/instance"
)

// dockerHost is the DOCKER_HOST value that reaches an instance's engine.
func dockerHost(inst *instance.Instance) string {
	return "unix://" + inst.Path(instance.DockerSocket)
}

// setupDockerContext creates or updates the instance's docker context
// and, with use, makes it the docker CLI's current one. It says how to
// use it. Failing here does not fail the start: the socket works anyway.
func setupDockerContext(out io.Writer, inst *instance.Instance, use bool) {
	name := dockerctx.Name(inst.Name)
	host := dockerHost(inst)
	dir, err := dockerctx.ConfigDir()
	if err == nil {
		_, err = dockerctx.Write(dir, dockerctx.Context{Name: name, Description: "berth instance " + inst.Name, Host: host})
	}
	if err != nil {
		fmt.Fprintf(out, "Warning: the docker context %q could not be written: %v\n", name, err)
		fmt.Fprintf(out, "The Docker API is at %s:\n  export DOCKER_HOST=%s\n", host, host)
		return
	}
	current, _ := dockerctx.Current(dir)
	if use && current != name {
		prev, err := dockerctx.Use(dir, name)
		if err != nil {
			fmt.Fprintf(out, "Warning: switching the docker CLI to %q: %v\n", name, err)
		} else {
			if prev == "" {
				prev = "default"
			}
			fmt.Fprintf(out, "The docker CLI now uses the %q context (it used %q; \"docker context use %s\" goes back).\n", name, prev, prev)
			current = name
		}
	}
	if current == name {
		fmt.Fprintf(out, "Docker: \"docker ps\" uses %q through the %q context (%s).\n", inst.Name, name, host)
	} else {
		fmt.Fprintf(out, "Docker: the %q context reaches %q (%s):\n", name, inst.Name, host)
		w := tabwriter.NewWriter(out, 0, 4, 3, ' ', 0)
		fmt.Fprintf(w, "  docker --context %s ps\tone command\n", name)
		fmt.Fprintf(w, "  docker context use %s\tevery command (or \"berth start --use-context\")\n", name)
		fmt.Fprintf(w, "  eval \"$(berth docker-env%s)\"\ttools that read DOCKER_HOST\n", nameSuffix(inst.Name))
		w.Flush()
	}
	for _, v := range []string{"DOCKER_HOST", "DOCKER_CONTEXT"} {
		if val := os.Getenv(v); val != "" && val != host && val != name {
			fmt.Fprintf(out, "Note: %s=%s is set in this shell; the docker CLI follows it rather than the current context.\n", v, val)
		}
	}
}

// nameSuffix is " NAME" for instances other than the default.
func nameSuffix(name string) string {
	if name == instance.DefaultName {
		return ""
	}
	return " " + name
}

func newDockerEnvCmd() *cobra.Command {
	var unset bool
	cmd := &cobra.Command{
		Use:   "docker-env [NAME]",
		Short: "Print the shell commands that point DOCKER_HOST at an instance",
		Long: `docker-env prints export commands for a POSIX shell that make the docker
CLI, docker-compose and other Docker API clients use the instance:

  eval "$(berth docker-env)"

--unset prints the commands that undo it. The "berth" docker context
(docker --context berth, docker context use berth) does the same for the
docker CLI without environment variables.`,
		Args: maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			inst, err := lookup(nameArg(args))
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if unset {
				fmt.Fprintln(out, "unset DOCKER_HOST")
				return nil
			}
			fmt.Fprintf(out, "export DOCKER_HOST=%s\n", shellQuote(dockerHost(inst)))
			if os.Getenv("DOCKER_CONTEXT") != "" {
				fmt.Fprintln(out, "unset DOCKER_CONTEXT")
			}
			fmt.Fprintf(out, "# Run this command to configure your shell:\n# eval \"$(berth docker-env%s)\"\n", nameSuffix(inst.Name))
			return nil
		},
	}
	cmd.Flags().BoolVarP(&unset, "unset", "u", false, "print the commands that unset DOCKER_HOST")
	return cmd
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/:._-+=@%,", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func newPortsCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "ports [NAME]",
		Short: "List the ports forwarded from the host to the instance",
		Long: `ports lists the ports the host agent forwards: the ports containers publish
("docker run -p"), and those that services in the VM listen on. A port
published on 0.0.0.0 listens on the host's 127.0.0.1 and ::1, unless
"ports: {bindAll: true}" is in the instance's config.yaml. A port that
cannot be opened on the host shows why.`,
		Args: maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			inst, err := lookup(nameArg(args))
			if err != nil {
				return err
			}
			pid, err := inst.AgentPID()
			if err != nil {
				return err
			}
			if pid == 0 {
				return fmt.Errorf("instance %q is not running (\"berth start%s\" starts it)", inst.Name, nameSuffix(inst.Name))
			}
			ports, err := hostagent.NewClient(inst.Path(instance.ControlSocket)).Ports(cmd.Context())
			if err != nil {
				return err
			}
			return printPorts(cmd.OutOrStdout(), ports, format)
		},
	}
	cmd.Flags().StringVar(&format, "format", "table", "output format: table or json")
	return cmd
}

func printPorts(out io.Writer, ports []portfwd.Forward, format string) error {
	switch format {
	case "json":
		return printJSON(out, ports)
	case "table", "":
	default:
		return usageError{fmt.Errorf("invalid --format %q: use table or json", format)}
	}
	w := tabwriter.NewWriter(out, 2, 4, 3, ' ', 0)
	fmt.Fprintln(w, "PROTO\tHOST\tGUEST\tSTATE")
	for _, p := range ports {
		host := strings.Join(p.Listen, ", ")
		state := "forwarding"
		if p.Error != "" {
			host = fmt.Sprintf("%s:%d", displayIP(p.HostIP), p.HostPort)
			state = "error: " + p.Error
		}
		fmt.Fprintf(w, "%s\t%s\t%s:%d\t%s\n", p.Proto, host, displayIP(p.GuestIP), p.GuestPort, state)
	}
	return w.Flush()
}

func displayIP(ip string) string {
	if strings.Contains(ip, ":") {
		return "[" + ip + "]"
	}
	return ip
}

func printJSON(out io.Writer, v any) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// removeDockerContext removes a deleted instance's docker context.
func removeDockerContext(out io.Writer, inst *instance.Instance) {
	dir, err := dockerctx.ConfigDir()
	if err != nil {
		return
	}
	name := dockerctx.Name(inst.Name)
	if _, err := dockerctx.Read(dir, name); err != nil {
		return
	}
	if err := dockerctx.Remove(dir, name); err != nil {
		fmt.Fprintf(out, "Warning: removing the docker context %q: %v\n", name, err)
		return
	}
	fmt.Fprintf(out, "Removed the docker context %q\n", name)
}
