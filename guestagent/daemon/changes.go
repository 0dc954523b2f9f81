package daemon

import (
	"path"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
)

// applyChanges applies `docker commit --change` Dockerfile instructions
// to cfg: ENV, LABEL, CMD, ENTRYPOINT, EXPOSE, WORKDIR, USER, VOLUME,
// STOPSIGNAL and ONBUILD, with variable expansion as in a build. As in a
// build, ENTRYPOINT clears a CMD not set by an earlier change.
func applyChanges(cfg *container.Config, changes []string) error {
	if len(changes) == 0 {
		return nil
	}
	res, err := parser.Parse(strings.NewReader(strings.Join(changes, "\n")))
	if err != nil {
		return invalidf("parsing --change: %v", err)
	}
	lex := shell.NewLex('\\')
	expand := func(s string) (string, error) {
		out, _, err := lex.ProcessWord(s, shell.EnvsFromSlice(cfg.Env))
		if err != nil {
			return "", invalidf("expanding %q: %v", s, err)
		}
		return out, nil
	}
	cmdSet := false
	for _, n := range res.AST.Children {
		args := nodeArgs(n)
		json := n.Attributes["json"]
		instr := strings.ToLower(n.Value)
		switch instr {
		case "env", "label":
			// The parser gives (name, value, separator) triples.
			if len(args) == 0 || len(args)%3 != 0 {
				return invalidf("%s requires at least one argument", strings.ToUpper(instr))
			}
			for i := 0; i < len(args); i += 3 {
				k, err := expand(args[i])
				if err != nil {
					return err
				}
				v, err := expand(args[i+1])
				if err != nil {
					return err
				}
				if instr == "env" {
					cfg.Env = mergeEnv(cfg.Env, []string{k + "=" + v})
				} else {
					if cfg.Labels == nil {
						cfg.Labels = map[string]string{}
					}
					cfg.Labels[k] = v
				}
			}
		case "cmd":
			cfg.Cmd = commandArgs(args, json, cfg.Shell)
			cmdSet = true
		case "entrypoint":
			cfg.Entrypoint = commandArgs(args, json, cfg.Shell)
			if cfg.Entrypoint == nil {
				cfg.Entrypoint = []string{}
			}
			if !cmdSet {
				cfg.Cmd = nil
			}
		case "expose":
			if len(args) == 0 {
				return invalidf("EXPOSE requires at least one argument")
			}
			for _, a := range args {
				a, err := expand(a)
				if err != nil {
					return err
				}
				ports, proto, _ := strings.Cut(a, "/")
				if proto == "" {
					proto = "tcp"
				}
				lo, hi, err := parsePortRange(ports)
				if err != nil || lo == 0 {
					return invalidf("invalid containerPort: %s", a)
				}
				for p := int(lo); p <= int(hi); p++ {
					port, ok := network.PortFrom(uint16(p), network.IPProtocol(strings.ToLower(proto)))
					if !ok {
						return invalidf("invalid proto: %s", proto)
					}
					if cfg.ExposedPorts == nil {
						cfg.ExposedPorts = network.PortSet{}
					}
					cfg.ExposedPorts[port] = struct{}{}
				}
			}
		case "workdir", "user", "stopsignal":
			if len(args) != 1 {
				return invalidf("%s requires exactly one argument", strings.ToUpper(instr))
			}
			v, err := expand(args[0])
			if err != nil {
				return err
			}
			switch instr {
			case "workdir":
				if !path.IsAbs(v) {
					base := cfg.WorkingDir
					if base == "" {
						base = "/"
					}
					v = path.Join(base, v)
				}
				cfg.WorkingDir = path.Clean(v)
			case "user":
				cfg.User = v
			case "stopsignal":
				if _, err := parseSignal(v); err != nil {
					return err
				}
				cfg.StopSignal = v
			}
		case "volume":
			if len(args) == 0 {
				return invalidf("VOLUME requires at least one argument")
			}
			for _, a := range args {
				v, err := expand(a)
				if err != nil {
					return err
				}
				v = strings.TrimSpace(v)
				if v == "" {
					return invalidf("VOLUME specified can not be an empty string")
				}
				if cfg.Volumes == nil {
					cfg.Volumes = map[string]struct{}{}
				}
				cfg.Volumes[v] = struct{}{}
			}
		case "onbuild":
			if n.Next == nil || len(n.Next.Children) == 0 {
				return invalidf("ONBUILD requires at least one argument")
			}
			switch inner := strings.ToLower(n.Next.Children[0].Value); inner {
			case "onbuild":
				return invalidf("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
			case "from", "maintainer":
				return invalidf("%s isn't allowed as an ONBUILD trigger", strings.ToUpper(inner))
			}
			orig := strings.TrimSpace(n.Original)
			if i := strings.IndexFunc(orig, func(r rune) bool { return r == ' ' || r == '\t' }); i > 0 {
				orig = strings.TrimSpace(orig[i:])
			}
			cfg.OnBuild = append(cfg.OnBuild, orig)
		default:
			return invalidf("%s is not a valid change command", strings.ToUpper(instr))
		}
	}
	return nil
}

// nodeArgs lists the words of an instruction node.
func nodeArgs(n *parser.Node) []string {
	var out []string
	for a := n.Next; a != nil; a = a.Next {
		out = append(out, a.Value)
	}
	return out
}

// commandArgs is CMD's and ENTRYPOINT's argv: the JSON form as is, the
// shell form through the shell.
func commandArgs(args []string, json bool, sh []string) []string {
	if json {
		return args
	}
	if len(args) == 0 {
		return nil
	}
	if len(sh) == 0 {
		sh = []string{"/bin/sh", "-c"}
	}
	return append(append([]string{}, sh...), strings.Join(args, " "))
}
