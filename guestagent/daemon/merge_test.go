package daemon

import (
	"errors"
	"reflect"
	"testing"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"

	"github.com/berthvm/berth/guestagent/engine"
)

func TestMergeConfig(t *testing.T) {
	img := &container.Config{
		User:         "app",
		Env:          []string{"PATH=/bin", "A=image", "B=image"},
		Entrypoint:   []string{"/entry.sh"},
		Cmd:          []string{"serve", "--port", "80"},
		WorkingDir:   "/srv",
		Labels:       map[string]string{"from": "image", "both": "image"},
		ExposedPorts: network.PortSet{network.MustParsePort("80/tcp"): {}},
		Volumes:      map[string]struct{}{"/data": {}},
		StopSignal:   "SIGQUIT",
	}
	tests := []struct {
		name                  string
		user                  *container.Config
		wantEntry, wantCmd    []string
		wantEnv               []string
		wantUser, wantWorkdir string
		wantLabels            map[string]string
		wantPorts, wantVols   int
		wantStop              string
	}{
		{
			name:      "nothing set takes the image's",
			user:      &container.Config{},
			wantEntry: []string{"/entry.sh"}, wantCmd: []string{"serve", "--port", "80"},
			wantEnv:  []string{"PATH=/bin", "A=image", "B=image"},
			wantUser: "app", wantWorkdir: "/srv",
			wantLabels: map[string]string{"from": "image", "both": "image"},
			wantPorts:  1, wantVols: 1, wantStop: "SIGQUIT",
		},
		{
			name:      "cmd replaces the image cmd and keeps its entrypoint",
			user:      &container.Config{Cmd: []string{"sh"}, Env: []string{"B=user", "C=user"}, Labels: map[string]string{"both": "user"}},
			wantEntry: []string{"/entry.sh"}, wantCmd: []string{"sh"},
			wantEnv:  []string{"PATH=/bin", "A=image", "B=user", "C=user"},
			wantUser: "app", wantWorkdir: "/srv",
			wantLabels: map[string]string{"from": "image", "both": "user"},
			wantPorts:  1, wantVols: 1, wantStop: "SIGQUIT",
		},
		{
			name:      "entrypoint override resets the image cmd",
			user:      &container.Config{Entrypoint: []string{"echo"}},
			wantEntry: []string{"echo"}, wantCmd: nil,
			wantEnv:  []string{"PATH=/bin", "A=image", "B=image"},
			wantUser: "app", wantWorkdir: "/srv",
			wantLabels: map[string]string{"from": "image", "both": "image"},
			wantPorts:  1, wantVols: 1, wantStop: "SIGQUIT",
		},
		{
			name:      "empty entrypoint clears both",
			user:      &container.Config{Entrypoint: []string{""}, Cmd: []string{"ls"}, User: "0", WorkingDir: "/tmp", StopSignal: "SIGINT", ExposedPorts: network.PortSet{network.MustParsePort("53/udp"): {}}},
			wantEntry: nil, wantCmd: []string{"ls"},
			wantEnv:  []string{"PATH=/bin", "A=image", "B=image"},
			wantUser: "0", wantWorkdir: "/tmp",
			wantLabels: map[string]string{"from": "image", "both": "image"},
			wantPorts:  2, wantVols: 1, wantStop: "SIGINT",
		},
	}
	for _, tt := range tests {
		got := mergeConfig(tt.user, img)
		if !reflect.DeepEqual(got.Entrypoint, tt.wantEntry) || !reflect.DeepEqual(got.Cmd, tt.wantCmd) {
			t.Errorf("%s: entrypoint %q cmd %q", tt.name, got.Entrypoint, got.Cmd)
		}
		if !reflect.DeepEqual(got.Env, tt.wantEnv) {
			t.Errorf("%s: env %q", tt.name, got.Env)
		}
		if got.User != tt.wantUser || got.WorkingDir != tt.wantWorkdir || got.StopSignal != tt.wantStop {
			t.Errorf("%s: user %q workdir %q stop %q", tt.name, got.User, got.WorkingDir, got.StopSignal)
		}
		if !reflect.DeepEqual(got.Labels, tt.wantLabels) {
			t.Errorf("%s: labels %v", tt.name, got.Labels)
		}
		if len(got.ExposedPorts) != tt.wantPorts || len(got.Volumes) != tt.wantVols {
			t.Errorf("%s: ports %v volumes %v", tt.name, got.ExposedPorts, got.Volumes)
		}
	}
	// The inputs are not changed.
	if len(img.Labels) != 2 || len(img.ExposedPorts) != 1 || len(img.Env) != 3 {
		t.Errorf("image config modified: %+v", img)
	}
}

func TestMergeEnv(t *testing.T) {
	got := mergeEnv([]string{"A=1", "B=2", "C"}, []string{"B=3", "D=4", "C=5"})
	if want := []string{"A=1", "B=3", "C=5", "D=4"}; !reflect.DeepEqual(got, want) {
		t.Errorf("mergeEnv = %q, want %q", got, want)
	}
}

func TestCommandOf(t *testing.T) {
	for _, tt := range []struct {
		entry, cmd []string
		path       string
		args       []string
		err        bool
	}{
		{nil, []string{"sh", "-c", "x"}, "sh", []string{"-c", "x"}, false},
		{[]string{"/e"}, []string{"a"}, "/e", []string{"a"}, false},
		{[]string{"/e"}, nil, "/e", []string{}, false},
		{nil, nil, "", nil, true},
		{nil, []string{""}, "", nil, true},
	} {
		p, a, err := commandOf(&container.Config{Entrypoint: tt.entry, Cmd: tt.cmd})
		if tt.err {
			if !errors.Is(err, engine.ErrInvalid) {
				t.Errorf("%q %q: err %v, want ErrInvalid", tt.entry, tt.cmd, err)
			}
			continue
		}
		if err != nil || p != tt.path || len(a) != len(tt.args) || (len(a) > 0 && !reflect.DeepEqual(a, tt.args)) {
			t.Errorf("%q %q: %q %q %v", tt.entry, tt.cmd, p, a, err)
		}
	}
}

func TestImageConfigRoundTrip(t *testing.T) {
	c := &container.Config{
		User: "u", Env: []string{"A=1"}, Cmd: []string{"c"}, Entrypoint: []string{"e"},
		WorkingDir: "/w", Labels: map[string]string{"l": "v"}, StopSignal: "SIGINT",
		ExposedPorts: network.PortSet{network.MustParsePort("80/tcp"): {}, network.MustParsePort("53/udp"): {}},
		Volumes:      map[string]struct{}{"/v": {}}, OnBuild: []string{"RUN x"},
	}
	back := imageToConfig(configToImage(c))
	if !reflect.DeepEqual(back, c) {
		t.Errorf("round trip:\n got %+v\nwant %+v", back, c)
	}
}

func TestCleanWorkdir(t *testing.T) {
	if d, err := cleanWorkdir("/a/../b/"); err != nil || d != "/b" {
		t.Errorf("cleanWorkdir = %q %v", d, err)
	}
	if _, err := cleanWorkdir("rel"); !errors.Is(err, engine.ErrInvalid) {
		t.Errorf("relative workdir: %v", err)
	}
}
