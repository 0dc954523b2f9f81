package daemon

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"

	"github.com/berthvm/berth/guestagent/engine"
)

func TestApplyChanges(t *testing.T) {
	base := func() *container.Config {
		return &container.Config{Env: []string{"PATH=/bin", "HOME=/root"}, WorkingDir: "/srv", Cmd: []string{"old"}}
	}
	tests := []struct {
		name    string
		changes []string
		check   func(*container.Config) bool
		wantErr string
	}{
		{name: "env forms", changes: []string{"ENV A=1 B=\"two words\"", "ENV C three words", "env D=$HOME/x"},
			check: func(c *container.Config) bool {
				return reflect.DeepEqual(c.Env, []string{"PATH=/bin", "HOME=/root", "A=1", "B=two words", "C=three words", "D=/root/x"})
			}},
		{name: "env override", changes: []string{"ENV HOME=/home/x"},
			check: func(c *container.Config) bool { return c.Env[1] == "HOME=/home/x" && len(c.Env) == 2 }},
		{name: "labels", changes: []string{`LABEL a=b "c d"="e f"`},
			check: func(c *container.Config) bool {
				return reflect.DeepEqual(c.Labels, map[string]string{"a": "b", "c d": "e f"})
			}},
		{name: "cmd json", changes: []string{`CMD ["cat", "/x"]`},
			check: func(c *container.Config) bool { return reflect.DeepEqual(c.Cmd, []string{"cat", "/x"}) }},
		{name: "cmd shell", changes: []string{"CMD echo hi there"},
			check: func(c *container.Config) bool {
				return reflect.DeepEqual(c.Cmd, []string{"/bin/sh", "-c", "echo hi there"})
			}},
		{name: "entrypoint resets cmd", changes: []string{`ENTRYPOINT ["/e"]`},
			check: func(c *container.Config) bool { return reflect.DeepEqual(c.Entrypoint, []string{"/e"}) && c.Cmd == nil }},
		{name: "cmd then entrypoint keeps cmd", changes: []string{`CMD ["a"]`, `ENTRYPOINT ["/e"]`},
			check: func(c *container.Config) bool { return reflect.DeepEqual(c.Cmd, []string{"a"}) }},
		{name: "expose", changes: []string{"EXPOSE 80 53/udp 8000-8002"},
			check: func(c *container.Config) bool {
				_, a := c.ExposedPorts[network.MustParsePort("80/tcp")]
				_, b := c.ExposedPorts[network.MustParsePort("53/udp")]
				_, r := c.ExposedPorts[network.MustParsePort("8002/tcp")]
				return a && b && r && len(c.ExposedPorts) == 5
			}},
		{name: "workdir relative", changes: []string{"WORKDIR app", "WORKDIR ../lib"},
			check: func(c *container.Config) bool { return c.WorkingDir == "/srv/lib" }},
		{name: "user stopsignal", changes: []string{"USER app:app", "STOPSIGNAL SIGQUIT"},
			check: func(c *container.Config) bool { return c.User == "app:app" && c.StopSignal == "SIGQUIT" }},
		{name: "volumes", changes: []string{"VOLUME /a /b", `VOLUME ["/c"]`},
			check: func(c *container.Config) bool { return len(c.Volumes) == 3 }},
		{name: "onbuild", changes: []string{"ONBUILD RUN make install"},
			check: func(c *container.Config) bool { return reflect.DeepEqual(c.OnBuild, []string{"RUN make install"}) }},
		{name: "run", changes: []string{"RUN rm -rf /"}, wantErr: "RUN is not a valid change command"},
		{name: "from", changes: []string{"FROM scratch"}, wantErr: "FROM is not a valid change command"},
		{name: "onbuild onbuild", changes: []string{"ONBUILD ONBUILD RUN x"}, wantErr: "Chaining ONBUILD"},
		{name: "bad signal", changes: []string{"STOPSIGNAL SIGNOPE"}, wantErr: "Invalid signal"},
		{name: "bad port", changes: []string{"EXPOSE http"}, wantErr: "invalid containerPort"},
	}
	for _, tt := range tests {
		c := base()
		err := applyChanges(c, tt.changes)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, engine.ErrInvalid) {
				t.Errorf("%s: err %v, want %q", tt.name, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if !tt.check(c) {
			t.Errorf("%s: config %+v", tt.name, c)
		}
	}
}

// FuzzApplyChanges checks that no --change input panics.
func FuzzApplyChanges(f *testing.F) {
	f.Add("ENV A=1")
	f.Add(`CMD ["a", "b"]`)
	f.Add("ONBUILD RUN x\nEXPOSE 1-2/udp")
	f.Add("LABEL \"a\"=\"b\" \\\n c=d")
	f.Fuzz(func(t *testing.T, s string) {
		c := &container.Config{}
		_ = applyChanges(c, strings.Split(s, "\n"))
	})
}

func TestParseSignal(t *testing.T) {
	for in, want := range map[string]int{"KILL": 9, "SIGKILL": 9, "sigterm": 15, "15": 15, "HUP": 1, "RTMIN": 34, "RTMIN+3": 37, "SIGRTMAX-1": 63, "64": 64} {
		if got, err := parseSignal(in); err != nil || got != want {
			t.Errorf("parseSignal(%q) = %d %v, want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0", "65", "-1", "SIGNOPE", "RTMIN+40", "RTMAX-99"} {
		if _, err := parseSignal(bad); !errors.Is(err, engine.ErrInvalid) {
			t.Errorf("parseSignal(%q): %v", bad, err)
		}
	}
}
