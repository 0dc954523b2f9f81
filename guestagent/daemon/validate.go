package daemon

import (
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"

	"github.com/berthvm/berth/guestagent/engine"
)

// minMemory is dockerd's smallest memory limit.
const minMemory = 6 * 1024 * 1024

func invalidf(format string, args ...any) error {
	return engine.WithKind(engine.ErrInvalid, fmt.Sprintf(format, args...))
}

// networkMode normalizes HostConfig.NetworkMode: "" and "default" are the
// bridge. Other networks do not exist (ErrNotFound, as dockerd says).
func networkMode(m container.NetworkMode) (string, error) {
	switch s := string(m); s {
	case "", "default", "bridge":
		return "bridge", nil
	case "none", "host":
		return s, nil
	default:
		if strings.HasPrefix(s, "container:") {
			return "", invalidf("network mode %q is not supported by berth", s)
		}
		return "", engine.WithKind(engine.ErrNotFound, fmt.Sprintf("network %s not found", s))
	}
}

// validateHostConfig checks hc as dockerd does at create and normalizes
// what it stores (restart policy name, network mode, pids limit). It
// returns warnings for settings berth accepts but does not apply.
func validateHostConfig(hc *container.HostConfig, cfg *container.Config, haveBridge bool) ([]string, error) {
	var warnings []string
	rp := &hc.RestartPolicy
	switch rp.Name {
	case "":
		rp.Name = container.RestartPolicyDisabled
	case container.RestartPolicyDisabled, container.RestartPolicyAlways, container.RestartPolicyUnlessStopped, container.RestartPolicyOnFailure:
	default:
		return nil, invalidf("invalid restart policy: unknown policy '%s'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'", rp.Name)
	}
	if rp.MaximumRetryCount < 0 {
		return nil, invalidf("invalid restart policy: maximum retry count cannot be negative")
	}
	if rp.MaximumRetryCount != 0 && rp.Name != container.RestartPolicyOnFailure {
		return nil, invalidf("invalid restart policy: maximum retry count can only be used with 'on-failure'")
	}
	if hc.AutoRemove && rp.Name != container.RestartPolicyDisabled {
		return nil, invalidf("can't create 'AutoRemove' container with restart policy")
	}

	r := &hc.Resources
	if r.Memory < 0 || r.Memory > 0 && r.Memory < minMemory {
		return nil, invalidf("Minimum memory limit allowed is 6MB")
	}
	if r.MemorySwap > 0 && r.Memory == 0 {
		return nil, invalidf("You should always set the Memory limit when using Memoryswap limit")
	}
	if r.MemorySwap > 0 && r.MemorySwap < r.Memory {
		return nil, invalidf("Minimum memoryswap limit should be larger than memory limit, see usage")
	}
	if r.NanoCPUs < 0 {
		return nil, invalidf("Range of CPUs is from 0.01 to %d.00, as there are only %d CPUs available", runtime.NumCPU(), runtime.NumCPU())
	}
	if r.NanoCPUs > 0 && (r.CPUPeriod > 0 || r.CPUQuota > 0) {
		return nil, invalidf("Conflicting options: Nano CPUs and CPU Period cannot both be set")
	}
	if r.NanoCPUs > int64(runtime.NumCPU())*1e9 {
		return nil, invalidf("Range of CPUs is from 0.01 to %d.00, as there are only %d CPUs available", runtime.NumCPU(), runtime.NumCPU())
	}
	if r.CPUShares < 0 {
		return nil, invalidf("invalid CPU shares %d: must not be negative", r.CPUShares)
	}
	if r.CPUPeriod != 0 && (r.CPUPeriod < 1000 || r.CPUPeriod > 1000000) {
		return nil, invalidf("CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)")
	}
	if r.CPUQuota != 0 && r.CPUQuota < 1000 && r.CPUQuota != -1 {
		return nil, invalidf("CPU cfs quota can not be less than 1ms (i.e. 1000)")
	}
	if r.PidsLimit != nil && *r.PidsLimit <= 0 {
		r.PidsLimit = nil // 0 and -1 mean unlimited
	}
	if len(r.Devices) > 0 || len(r.DeviceRequests) > 0 {
		return nil, invalidf("devices are not supported by berth")
	}
	if len(r.Ulimits) > 0 {
		warnings = append(warnings, "ulimits are not applied by berth")
	}

	// An unknown network fails the start, not the create, as in dockerd:
	// the CLI takes a 404 from create for a missing image and pulls.
	mode, err := networkMode(hc.NetworkMode)
	if err != nil && !errors.Is(err, engine.ErrNotFound) {
		return nil, err
	}
	if err == nil {
		if mode == "bridge" && !haveBridge && hc.NetworkMode != "bridge" {
			mode = "none"
			warnings = append(warnings, "bridge networking is not available: the container has no network")
		}
		hc.NetworkMode = container.NetworkMode(mode)
	}
	if _, err := portBindings(hc.PortBindings); err != nil {
		return nil, err
	}
	if mode == "host" && (len(hc.PortBindings) > 0 || hc.PublishAllPorts) {
		warnings = append(warnings, "Published ports are discarded when using host network mode")
	}
	for _, h := range hc.ExtraHosts {
		if _, _, err := parseExtraHost(h); err != nil {
			return nil, err
		}
	}

	for _, opt := range hc.SecurityOpt {
		if _, _, err := parseSecurityOpt(opt); err != nil {
			return nil, err
		}
	}
	switch hc.LogConfig.Type {
	case "":
		hc.LogConfig.Type = "json-file"
	case "json-file", "local", "none":
	default:
		return nil, invalidf("logging driver %q is not supported by berth (json-file, local, none)", hc.LogConfig.Type)
	}
	switch hc.UsernsMode {
	case "", "host", "private":
	default:
		return nil, invalidf("user namespace mode %q is not supported (host, private)", hc.UsernsMode)
	}
	for what, m := range map[string]string{"--pid": string(hc.PidMode), "--ipc": string(hc.IpcMode), "--uts": string(hc.UTSMode)} {
		switch m {
		case "", "private", "shareable":
		default:
			return nil, invalidf("%s=%s is not supported by berth", what, m)
		}
	}
	if len(hc.VolumesFrom) > 0 {
		return nil, invalidf("--volumes-from is not supported by berth")
	}
	if len(hc.Links) > 0 {
		return nil, invalidf("legacy container links are not supported by berth")
	}
	if len(hc.Sysctls) > 0 {
		warnings = append(warnings, "sysctls are not applied by berth")
	}
	if hc.Init != nil && *hc.Init {
		warnings = append(warnings, "--init is not available in berth: the command runs as the container's PID 1")
	}
	if cfg != nil {
		for _, kv := range cfg.Env {
			if envKey(kv) == "" {
				return nil, invalidf("invalid environment variable: %s", kv)
			}
		}
		if _, err := parseSignal(cfg.StopSignal); cfg.StopSignal != "" && err != nil {
			return nil, err
		}
	}
	return warnings, nil
}

// securityOpts are the --security-opt values berth applies.
type securityOpts struct {
	NoNewPrivileges   bool
	SeccompUnconfined bool
}

// parseSecurityOpt understands no-new-privileges[:=bool] and
// seccomp=unconfined, and accepts (ignores) apparmor and label options,
// which have no meaning in the guest.
func parseSecurityOpt(opt string) (key, value string, err error) {
	k, v, ok := strings.Cut(opt, "=")
	if !ok {
		k, v, ok = strings.Cut(opt, ":")
	}
	switch k {
	case "no-new-privileges":
		if !ok {
			return k, "true", nil
		}
		if _, err := strconv.ParseBool(v); err != nil {
			return "", "", invalidf("invalid --security-opt 2: %q", opt)
		}
		return k, v, nil
	case "seccomp":
		if v == "unconfined" {
			return k, v, nil
		}
		return "", "", invalidf("custom seccomp profiles are not supported by berth (only seccomp=unconfined)")
	case "apparmor", "label", "systempaths":
		return k, v, nil
	}
	return "", "", invalidf("invalid --security-opt: %q", opt)
}

func securityOf(hc *container.HostConfig) securityOpts {
	var s securityOpts
	for _, opt := range hc.SecurityOpt {
		k, v, err := parseSecurityOpt(opt)
		if err != nil {
			continue
		}
		switch k {
		case "no-new-privileges":
			s.NoNewPrivileges, _ = strconv.ParseBool(v)
		case "seccomp":
			s.SeccompUnconfined = v == "unconfined"
		}
	}
	return s
}

// parseExtraHost splits "name:ip" (or "name=ip"); ip may be
// "host-gateway".
func parseExtraHost(h string) (string, string, error) {
	name, ip, ok := strings.Cut(h, "=")
	if !ok {
		name, ip, ok = strings.Cut(h, ":")
	}
	if !ok || name == "" || ip == "" {
		return "", "", invalidf("invalid extra host: %q (want NAME:IP)", h)
	}
	ip = strings.TrimSuffix(strings.TrimPrefix(ip, "["), "]")
	if ip != "host-gateway" {
		if _, err := netip.ParseAddr(ip); err != nil {
			return "", "", invalidf("invalid IP address in add-host: %q", ip)
		}
	}
	return name, ip, nil
}

// hostBinding is one host side of a published port.
type hostBinding struct {
	Proto         string
	ContainerPort uint16
	HostIP        string
	HostPort      uint16 // 0: any; with HostPortEnd, the first of a range
	HostPortEnd   uint16
}

// portBindings checks and flattens HostConfig.PortBindings, in a stable
// order.
func portBindings(pm network.PortMap) ([]hostBinding, error) {
	keys := make([]network.Port, 0, len(pm))
	for p := range pm {
		keys = append(keys, p)
	}
	slices.SortFunc(keys, func(a, b network.Port) int {
		if a.Num() != b.Num() {
			return int(a.Num()) - int(b.Num())
		}
		return strings.Compare(string(a.Proto()), string(b.Proto()))
	})
	var out []hostBinding
	for _, p := range keys {
		if !p.IsValid() || p.Num() == 0 {
			return nil, invalidf("invalid port specification: %q", p.String())
		}
		proto := string(p.Proto())
		if proto != "tcp" && proto != "udp" {
			return nil, invalidf("invalid proto: %s (berth publishes tcp and udp)", proto)
		}
		bs := pm[p]
		if len(bs) == 0 {
			bs = []network.PortBinding{{}}
		}
		for _, b := range bs {
			hb := hostBinding{Proto: proto, ContainerPort: p.Num()}
			if b.HostIP.IsValid() && !b.HostIP.IsUnspecified() {
				if !b.HostIP.Unmap().Is4() {
					return nil, invalidf("invalid host IP %s: berth publishes ports on IPv4 only", b.HostIP)
				}
				hb.HostIP = b.HostIP.Unmap().String()
			} else if b.HostIP.Is6() {
				continue // "::" next to "0.0.0.0": the IPv4 binding covers it
			}
			if b.HostPort != "" {
				lo, hi, err := parsePortRange(b.HostPort)
				if err != nil {
					return nil, err
				}
				hb.HostPort = lo
				if hi != lo {
					hb.HostPortEnd = hi
				}
			}
			out = append(out, hb)
		}
	}
	return out, nil
}

func parsePortRange(s string) (uint16, uint16, error) {
	a, b, isRange := strings.Cut(s, "-")
	lo, err := strconv.ParseUint(a, 10, 16)
	if err != nil {
		return 0, 0, invalidf("invalid hostPort: %s", s)
	}
	hi := lo
	if isRange {
		if hi, err = strconv.ParseUint(b, 10, 16); err != nil || hi < lo {
			return 0, 0, invalidf("invalid hostPort: %s", s)
		}
	}
	return uint16(lo), uint16(hi), nil
}
