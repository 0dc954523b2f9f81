package daemon

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/docker/go-units"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
)

// Files in a container's directory owned by the daemon.
const (
	configFile     = "config.v2.json"
	hostConfigFile = "hostconfig.json"
	hostnameFile   = "hostname"
	hostsFile      = "hosts"
	resolvFile     = "resolv.conf"
	upperDir       = "upper"
	workDir        = "work"
	rootfsDir      = "rootfs"
	emptyLowerDir  = "empty" // the lower dir of an image without layers
)

// state is a container's run state, as dockerd keeps it.
type state struct {
	Running    bool      `json:"running"`
	Paused     bool      `json:"paused"`
	Restarting bool      `json:"restarting"`
	OOMKilled  bool      `json:"oom_killed"`
	Removing   bool      `json:"removing"`
	Dead       bool      `json:"dead"`
	Pid        int       `json:"pid"`
	ExitCode   int       `json:"exit_code"`
	Error      string    `json:"error,omitempty"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
}

// status is the State.Status string.
func (s state) status() container.ContainerState {
	switch {
	case s.Removing:
		return container.StateRemoving
	case s.Dead:
		return container.StateDead
	case s.Restarting:
		return container.StateRestarting
	case s.Running && s.Paused:
		return container.StatePaused
	case s.Running:
		return container.StateRunning
	case s.StartedAt.IsZero():
		return container.StateCreated
	}
	return container.StateExited
}

// text is `docker ps`'s STATUS column.
func (s state) text(now time.Time) string {
	switch {
	case s.Running && s.Paused:
		return fmt.Sprintf("Up %s (Paused)", units.HumanDuration(now.Sub(s.StartedAt)))
	case s.Restarting:
		return fmt.Sprintf("Restarting (%d) %s ago", s.ExitCode, units.HumanDuration(now.Sub(s.FinishedAt)))
	case s.Running:
		return "Up " + units.HumanDuration(now.Sub(s.StartedAt))
	case s.Removing:
		return "Removal In Progress"
	case s.Dead:
		return "Dead"
	case s.StartedAt.IsZero():
		return "Created"
	case s.FinishedAt.IsZero():
		return ""
	}
	return fmt.Sprintf("Exited (%d) %s ago", s.ExitCode, units.HumanDuration(now.Sub(s.FinishedAt)))
}

// netRecord is a container's network while it runs.
type netRecord struct {
	Mode      string          `json:"mode"`
	NetNS     string          `json:"netns,omitempty"`
	IP        string          `json:"ip,omitempty"`
	PrefixLen int             `json:"prefix_len,omitempty"`
	Gateway   string          `json:"gateway,omitempty"`
	MAC       string          `json:"mac,omitempty"`
	Ports     []publishedPort `json:"ports,omitempty"`
}

type publishedPort struct {
	Proto         string `json:"proto"`
	HostIP        string `json:"host_ip"`
	HostPort      uint16 `json:"host_port"`
	ContainerPort uint16 `json:"container_port"`
}

// record is what config.v2.json holds.
type record struct {
	ID      string            `json:"id"`
	Name    string            `json:"name"` // with its "/"
	Created time.Time         `json:"created"`
	Path    string            `json:"path"`
	Args    []string          `json:"args"`
	Config  *container.Config `json:"config"`
	// Image is the image ID ("sha256:...").
	Image        string       `json:"image"`
	State        state        `json:"state"`
	RestartCount int          `json:"restart_count"`
	MountPoints  []mountPoint `json:"mounts,omitempty"`
	Net          *netRecord   `json:"net,omitempty"`
	// HasBeenStartedBefore and HasBeenManuallyStopped drive restart
	// policies as dockerd's fields of the same names.
	HasBeenStartedBefore   bool `json:"started_before"`
	HasBeenManuallyStopped bool `json:"manually_stopped"`
	// EndpointConfig is the create request's settings for the
	// container's network (a MAC address, aliases).
	EndpointConfig *network.EndpointSettings `json:"endpoint_config,omitempty"`
	// Lowers are the image's layer dirs, relative to the snapshot root,
	// top-most first, as of create.
	Lowers []string `json:"lowers,omitempty"`
}

// writeFileAtomic writes a file so that a crash leaves either the old or
// the new content: temp file, fsync, rename, fsync of the directory.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

func writeJSONAtomic(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding %s: %w", filepath.Base(path), err)
	}
	if err := writeFileAtomic(path, b, 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decoding %s: %w", path, err)
	}
	return nil
}
