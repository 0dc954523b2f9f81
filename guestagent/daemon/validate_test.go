package daemon

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"

	"github.com/berthvm/berth/guestagent/engine"
)

func TestValidateHostConfig(t *testing.T) {
	i64 := func(n int64) *int64 { return &n }
	tests := []struct {
		name    string
		hc      container.HostConfig
		noNet   bool
		wantErr string // substring; "" means valid
		check   func(t *testing.T, hc *container.HostConfig, warnings []string)
	}{
		{name: "defaults", check: func(t *testing.T, hc *container.HostConfig, _ []string) {
			if hc.RestartPolicy.Name != "no" || hc.NetworkMode != "bridge" || hc.LogConfig.Type != "json-file" {
				t.Errorf("normalized to %+v", hc)
			}
		}},
		{name: "unknown policy", hc: container.HostConfig{RestartPolicy: container.RestartPolicy{Name: "sometimes"}}, wantErr: "unknown policy 'sometimes'"},
		{name: "retries without on-failure", hc: container.HostConfig{RestartPolicy: container.RestartPolicy{Name: "always", MaximumRetryCount: 3}}, wantErr: "maximum retry count can only be used with 'on-failure'"},
		{name: "negative retries", hc: container.HostConfig{RestartPolicy: container.RestartPolicy{Name: "on-failure", MaximumRetryCount: -1}}, wantErr: "cannot be negative"},
		{name: "on-failure with retries", hc: container.HostConfig{RestartPolicy: container.RestartPolicy{Name: "on-failure", MaximumRetryCount: 3}}},
		{name: "rm with restart", hc: container.HostConfig{AutoRemove: true, RestartPolicy: container.RestartPolicy{Name: "unless-stopped"}}, wantErr: "AutoRemove"},
		{name: "rm with no restart", hc: container.HostConfig{AutoRemove: true, RestartPolicy: container.RestartPolicy{Name: "no"}}},
		{name: "tiny memory", hc: container.HostConfig{Resources: container.Resources{Memory: 4 << 20}}, wantErr: "Minimum memory limit allowed is 6MB"},
		{name: "memory ok", hc: container.HostConfig{Resources: container.Resources{Memory: 6 << 20}}},
		{name: "swap without memory", hc: container.HostConfig{Resources: container.Resources{MemorySwap: 64 << 20}}, wantErr: "set the Memory limit"},
		{name: "swap below memory", hc: container.HostConfig{Resources: container.Resources{Memory: 64 << 20, MemorySwap: 32 << 20}}, wantErr: "larger than memory limit"},
		{name: "unlimited swap", hc: container.HostConfig{Resources: container.Resources{Memory: 64 << 20, MemorySwap: -1}}},
		{name: "too many cpus", hc: container.HostConfig{Resources: container.Resources{NanoCPUs: 1e15}}, wantErr: "Range of CPUs"},
		{name: "cpus and period", hc: container.HostConfig{Resources: container.Resources{NanoCPUs: 5e8, CPUPeriod: 100000}}, wantErr: "Nano CPUs and CPU Period"},
		{name: "pids unlimited", hc: container.HostConfig{Resources: container.Resources{PidsLimit: i64(-1)}}, check: func(t *testing.T, hc *container.HostConfig, _ []string) {
			if hc.PidsLimit != nil {
				t.Errorf("PidsLimit -1 kept as %d", *hc.PidsLimit)
			}
		}},
		{name: "host network", hc: container.HostConfig{NetworkMode: "host"}},
		{name: "none network", hc: container.HostConfig{NetworkMode: "none"}},
		{name: "unknown network is the start's business", hc: container.HostConfig{NetworkMode: "mynet"}, check: func(t *testing.T, hc *container.HostConfig, _ []string) {
			if hc.NetworkMode != "mynet" {
				t.Errorf("network mode %q", hc.NetworkMode)
			}
		}},
		{name: "container network", hc: container.HostConfig{NetworkMode: "container:x"}, wantErr: "not supported"},
		{name: "default without a bridge", hc: container.HostConfig{NetworkMode: "default"}, noNet: true, check: func(t *testing.T, hc *container.HostConfig, w []string) {
			if hc.NetworkMode != "none" || len(w) != 1 {
				t.Errorf("mode %q warnings %q", hc.NetworkMode, w)
			}
		}},
		{name: "sctp port", hc: container.HostConfig{PortBindings: network.PortMap{network.MustParsePort("80/sctp"): nil}}, wantErr: "invalid proto"},
		{name: "bad host port", hc: container.HostConfig{PortBindings: network.PortMap{network.MustParsePort("80/tcp"): {{HostPort: "http"}}}}, wantErr: "invalid hostPort"},
		{name: "host port range", hc: container.HostConfig{PortBindings: network.PortMap{network.MustParsePort("80/tcp"): {{HostPort: "8000-8010"}}}}},
		{name: "ports with host network", hc: container.HostConfig{NetworkMode: "host", PortBindings: network.PortMap{network.MustParsePort("80/tcp"): {{HostPort: "80"}}}}, check: func(t *testing.T, _ *container.HostConfig, w []string) {
			if len(w) != 1 || !strings.Contains(w[0], "discarded") {
				t.Errorf("warnings %q", w)
			}
		}},
		{name: "seccomp unconfined", hc: container.HostConfig{SecurityOpt: []string{"seccomp=unconfined", "no-new-privileges"}}},
		{name: "seccomp profile", hc: container.HostConfig{SecurityOpt: []string{`seccomp={"defaultAction":"SCMP_ACT_ALLOW"}`}}, wantErr: "custom seccomp profiles"},
		{name: "bad security opt", hc: container.HostConfig{SecurityOpt: []string{"frobnicate"}}, wantErr: "invalid --security-opt"},
		{name: "log driver", hc: container.HostConfig{LogConfig: container.LogConfig{Type: "syslog"}}, wantErr: "logging driver"},
		{name: "pid host", hc: container.HostConfig{PidMode: "host"}, wantErr: "--pid=host"},
		{name: "extra host", hc: container.HostConfig{ExtraHosts: []string{"db:10.0.0.2", "gw:host-gateway", "v6=::1"}}},
		{name: "bad extra host", hc: container.HostConfig{ExtraHosts: []string{"db"}}, wantErr: "invalid extra host"},
		{name: "devices", hc: container.HostConfig{Resources: container.Resources{Devices: []container.DeviceMapping{{PathOnHost: "/dev/kvm"}}}}, wantErr: "devices"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hc := tt.hc
			w, err := validateHostConfig(&hc, &container.Config{}, !tt.noNet)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, engine.ErrInvalid) {
					t.Fatalf("err = %v, want ErrInvalid with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.check != nil {
				tt.check(t, &hc, w)
			}
		})
	}
}

func TestValidateEnvAndStopSignal(t *testing.T) {
	if _, err := validateHostConfig(&container.HostConfig{}, &container.Config{Env: []string{"=x"}}, true); !errors.Is(err, engine.ErrInvalid) {
		t.Errorf("empty env name: %v", err)
	}
	if _, err := validateHostConfig(&container.HostConfig{}, &container.Config{StopSignal: "SIGNOPE"}, true); !errors.Is(err, engine.ErrInvalid) {
		t.Errorf("bad stop signal: %v", err)
	}
}

func TestNetworkMode(t *testing.T) {
	for in, want := range map[container.NetworkMode]string{"": "bridge", "default": "bridge", "bridge": "bridge", "host": "host", "none": "none"} {
		if got, err := networkMode(in); err != nil || got != want {
			t.Errorf("networkMode(%q) = %q %v", in, got, err)
		}
	}
	_, err := networkMode("frontend")
	if !errors.Is(err, engine.ErrNotFound) || err.Error() != "network frontend not found" {
		t.Errorf("unknown network: %v", err)
	}
}

func TestPortBindings(t *testing.T) {
	pm := network.PortMap{
		network.MustParsePort("80/tcp"):  {{HostIP: netip.MustParseAddr("0.0.0.0"), HostPort: "8080"}, {HostIP: netip.MustParseAddr("::"), HostPort: "8080"}},
		network.MustParsePort("53/udp"):  {{HostIP: netip.MustParseAddr("127.0.0.1")}},
		network.MustParsePort("443/tcp"): nil,
		network.MustParsePort("90/tcp"):  {{HostPort: "9000-9005"}},
	}
	got, err := portBindings(pm)
	if err != nil {
		t.Fatal(err)
	}
	want := []hostBinding{
		{Proto: "udp", ContainerPort: 53, HostIP: "127.0.0.1"},
		{Proto: "tcp", ContainerPort: 80, HostPort: 8080},
		{Proto: "tcp", ContainerPort: 90, HostPort: 9000, HostPortEnd: 9005},
		{Proto: "tcp", ContainerPort: 443},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("binding %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if _, err := portBindings(network.PortMap{network.MustParsePort("80/tcp"): {{HostIP: netip.MustParseAddr("fd00::1")}}}); err == nil {
		t.Error("an IPv6 host IP was accepted")
	}
}

func TestSecurityOf(t *testing.T) {
	s := securityOf(&container.HostConfig{SecurityOpt: []string{"no-new-privileges:true", "seccomp:unconfined", "apparmor=unconfined"}})
	if !s.NoNewPrivileges || !s.SeccompUnconfined {
		t.Errorf("securityOf = %+v", s)
	}
	if s := securityOf(&container.HostConfig{SecurityOpt: []string{"no-new-privileges=false"}}); s.NoNewPrivileges {
		t.Errorf("no-new-privileges=false gave %+v", s)
	}
}
