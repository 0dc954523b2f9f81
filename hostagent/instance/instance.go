// Package instance owns an instance's directory under BERTH_HOME: its name,
// its config.yaml, the paths of its sockets, logs and disks, and whether its
// host agent is alive. It does not start or stop anything; hostagent does.
package instance

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
)

// DefaultName is the instance used when none is named.
const DefaultName = "default"

// Files in an instance directory. Keep names short: unix socket paths are
// limited to 104 bytes on macOS.
const (
	ConfigFile    = "config.yaml"
	DataDiskFile  = "data.img"
	PidFile       = "hostagent.pid"
	ControlSocket = "hostagent.sock"
	LogFile       = "hostagent.log"
	EventsFile    = "events.jsonl"
	SerialLogFile = "serial.log"
	DockerSocket  = "docker.sock"
	// NetSocket is the host agent's end of the VM's NIC (QEMU).
	NetSocket = "net.sock"
)

// ErrNotExist reports an instance that has not been created.
var ErrNotExist = errors.New("instance does not exist")

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,31}$`)

// ValidateName checks that name can be an instance name: a short lower-case
// word that is safe as a directory name and in socket paths.
func ValidateName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("invalid instance name %q: use 1-32 characters of a-z, 0-9, '.', '_' and '-', starting with a letter or digit", name)
	}
	return nil
}

// Home is the directory that holds all instances: $BERTH_HOME, or ~/.berth.
func Home() (string, error) {
	if h := os.Getenv("BERTH_HOME"); h != "" {
		return filepath.Abs(h)
	}
	u, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("finding the home directory (set BERTH_HOME): %w", err)
	}
	return filepath.Join(u, ".berth"), nil
}

// Instance is one named VM and its directory.
type Instance struct {
	Name string
	Dir  string
}

// New returns the instance called name under home, without touching disk.
func New(home, name string) (*Instance, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	return &Instance{Name: name, Dir: filepath.Join(home, name)}, nil
}

// Lookup returns an existing instance, or an error wrapping ErrNotExist.
func Lookup(home, name string) (*Instance, error) {
	inst, err := New(home, name)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(inst.Path(ConfigFile)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("instance %q: %w (\"berth list\" shows the instances, \"berth start %s\" creates it)", name, ErrNotExist, name)
		}
		return nil, fmt.Errorf("reading instance %q: %w", name, err)
	}
	return inst, nil
}

// List returns the names of the instances under home, sorted.
func List(home string) ([]string, error) {
	entries, err := os.ReadDir(home)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing instances: %w", err)
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() || ValidateName(e.Name()) != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(home, e.Name(), ConfigFile)); err == nil {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}

// Path returns the path of a file in the instance directory.
func (i *Instance) Path(file string) string { return filepath.Join(i.Dir, file) }

// Create makes the instance directory (0700) and writes its first config.
// It fails if the instance already exists.
func (i *Instance) Create(cfg *Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if _, err := os.Stat(i.Path(ConfigFile)); err == nil {
		return fmt.Errorf("instance %q already exists", i.Name)
	}
	if err := os.MkdirAll(i.Dir, 0o700); err != nil {
		return fmt.Errorf("creating instance directory: %w", err)
	}
	return i.SaveConfig(cfg)
}
