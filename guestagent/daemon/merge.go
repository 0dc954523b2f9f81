package daemon

import (
	"maps"
	"path"
	"slices"
	"strings"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"

	"github.com/berthvm/berth/guestagent/engine"
)

// imageToConfig converts an image's config to the container config shape.
func imageToConfig(ic dockerspec.DockerOCIImageConfig) *container.Config {
	c := &container.Config{
		User:        ic.User,
		Env:         slices.Clone(ic.Env),
		Cmd:         slices.Clone(ic.Cmd),
		Entrypoint:  slices.Clone(ic.Entrypoint),
		WorkingDir:  ic.WorkingDir,
		Labels:      maps.Clone(ic.Labels),
		StopSignal:  ic.StopSignal,
		OnBuild:     slices.Clone(ic.OnBuild),
		Shell:       slices.Clone(ic.Shell),
		ArgsEscaped: ic.ArgsEscaped,
	}
	if len(ic.ExposedPorts) > 0 {
		c.ExposedPorts = network.PortSet{}
		for p := range ic.ExposedPorts {
			if port, err := network.ParsePort(p); err == nil {
				c.ExposedPorts[port] = struct{}{}
			}
		}
	}
	if len(ic.Volumes) > 0 {
		c.Volumes = map[string]struct{}{}
		for v := range ic.Volumes {
			c.Volumes[v] = struct{}{}
		}
	}
	return c
}

// configToImage converts a container config back to an image config, for
// commit.
func configToImage(c *container.Config) dockerspec.DockerOCIImageConfig {
	var ic dockerspec.DockerOCIImageConfig
	ic.User = c.User
	ic.Env = slices.Clone(c.Env)
	ic.Entrypoint = slices.Clone(c.Entrypoint)
	ic.Cmd = slices.Clone(c.Cmd)
	ic.WorkingDir = c.WorkingDir
	ic.Labels = maps.Clone(c.Labels)
	ic.StopSignal = c.StopSignal
	ic.OnBuild = slices.Clone(c.OnBuild)
	ic.Shell = slices.Clone(c.Shell)
	ic.Healthcheck = c.Healthcheck
	if len(c.ExposedPorts) > 0 {
		ic.ExposedPorts = map[string]struct{}{}
		for p := range c.ExposedPorts {
			ic.ExposedPorts[p.String()] = struct{}{}
		}
	}
	if len(c.Volumes) > 0 {
		ic.Volumes = map[string]struct{}{}
		for v := range c.Volumes {
			ic.Volumes[v] = struct{}{}
		}
	}
	return ic
}

func envKey(kv string) string {
	k, _, _ := strings.Cut(kv, "=")
	return k
}

// mergeEnv returns base with over applied: a variable of over replaces
// the one of base with the same name in place, new ones are appended.
func mergeEnv(base, over []string) []string {
	out := slices.Clone(base)
	idx := map[string]int{}
	for i, kv := range out {
		idx[envKey(kv)] = i
	}
	for _, kv := range over {
		if i, ok := idx[envKey(kv)]; ok {
			out[i] = kv
			continue
		}
		idx[envKey(kv)] = len(out)
		out = append(out, kv)
	}
	return out
}

// mergeConfig fills what the user left unset in user from the image's
// config, as dockerd does at create (and commit): User, WorkingDir and
// StopSignal when empty; ExposedPorts, Volumes, Env and Labels merged
// (the user's win); Entrypoint and Cmd from the image unless the user set
// an Entrypoint (which resets the image's Cmd) or a Cmd (which replaces
// the image's Cmd and keeps its Entrypoint). It returns a new Config.
func mergeConfig(user, img *container.Config) *container.Config {
	c := *user
	c.Env = slices.Clone(user.Env)
	c.Cmd = slices.Clone(user.Cmd)
	c.Entrypoint = slices.Clone(user.Entrypoint)
	c.Labels = maps.Clone(user.Labels)
	c.ExposedPorts = maps.Clone(user.ExposedPorts)
	c.Volumes = maps.Clone(user.Volumes)
	if img == nil {
		img = &container.Config{}
	}
	if c.User == "" {
		c.User = img.User
	}
	if c.WorkingDir == "" {
		c.WorkingDir = img.WorkingDir
	}
	if c.StopSignal == "" {
		c.StopSignal = img.StopSignal
	}
	for p := range img.ExposedPorts {
		if c.ExposedPorts == nil {
			c.ExposedPorts = network.PortSet{}
		}
		c.ExposedPorts[p] = struct{}{}
	}
	for v := range img.Volumes {
		if c.Volumes == nil {
			c.Volumes = map[string]struct{}{}
		}
		c.Volumes[v] = struct{}{}
	}
	c.Env = mergeEnv(img.Env, c.Env)
	if len(img.Labels) > 0 {
		labels := maps.Clone(img.Labels)
		maps.Copy(labels, c.Labels)
		c.Labels = labels
	}
	if c.Labels == nil {
		c.Labels = map[string]string{}
	}
	if user.Entrypoint == nil {
		c.Entrypoint = slices.Clone(img.Entrypoint)
		if len(c.Cmd) == 0 {
			c.Cmd = slices.Clone(img.Cmd)
		}
	} else if len(c.Entrypoint) == 1 && c.Entrypoint[0] == "" {
		// --entrypoint "": no entrypoint at all, and not the image's Cmd.
		c.Entrypoint = nil
	}
	if c.OnBuild == nil {
		c.OnBuild = slices.Clone(img.OnBuild)
	}
	if c.Shell == nil {
		c.Shell = slices.Clone(img.Shell)
	}
	return &c
}

// commandOf splits the merged Entrypoint and Cmd into Path and Args.
func commandOf(c *container.Config) (string, []string, error) {
	argv := append(slices.Clone(c.Entrypoint), c.Cmd...)
	if len(argv) == 0 || argv[0] == "" {
		return "", nil, engine.WithKind(engine.ErrInvalid, "no command specified")
	}
	return argv[0], argv[1:], nil
}

// cleanWorkdir checks WorkingDir: empty, or an absolute path.
func cleanWorkdir(dir string) (string, error) {
	if dir == "" {
		return "", nil
	}
	if !path.IsAbs(dir) {
		return "", engine.WithKind(engine.ErrInvalid, "the working directory '"+dir+"' is invalid, it needs to be an absolute path")
	}
	return path.Clean(dir), nil
}
