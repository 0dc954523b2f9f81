package instance

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Limits on what an instance may ask for.
const (
	MinMemory = 256 << 20
	MinDisk   = 1 << 30
	MaxCPUs   = 256
)

// Config is an instance's config.yaml.
type Config struct {
	Arch   string `yaml:"arch"`             // x86_64 or aarch64
	CPUs   int    `yaml:"cpus"`             // virtual CPUs
	Memory Size   `yaml:"memory"`           // guest RAM
	Disk   Size   `yaml:"disk"`             // data disk size (sparse)
	Driver string `yaml:"driver,omitempty"` // qemu, vz; empty picks the host's default
	Ports  Ports  `yaml:"ports,omitempty"`
}

// Ports is the instance's port-forwarding policy.
type Ports struct {
	// BindAll publishes container ports on every host interface instead of
	// loopback only.
	BindAll bool `yaml:"bindAll,omitempty"`
}

// DefaultConfig is what a new instance gets when no flag says otherwise.
func DefaultConfig() *Config {
	arch := "x86_64"
	if runtime.GOARCH == "arm64" {
		arch = "aarch64"
	}
	cpus := runtime.NumCPU()
	if cpus > 4 {
		cpus = 4
	}
	return &Config{Arch: arch, CPUs: cpus, Memory: 2 << 30, Disk: 64 << 30}
}

// Validate reports the first thing wrong with c, in words a user can act on.
func (c *Config) Validate() error {
	switch c.Arch {
	case "x86_64", "aarch64":
	default:
		return fmt.Errorf("invalid arch %q: use x86_64 or aarch64", c.Arch)
	}
	if c.CPUs < 1 || c.CPUs > MaxCPUs {
		return fmt.Errorf("invalid cpus %d: use 1 to %d", c.CPUs, MaxCPUs)
	}
	if c.Memory < MinMemory {
		return fmt.Errorf("invalid memory %s: at least %s is needed", c.Memory, Size(MinMemory))
	}
	if c.Disk < MinDisk {
		return fmt.Errorf("invalid disk %s: at least %s is needed", c.Disk, Size(MinDisk))
	}
	switch c.Driver {
	case "", "qemu", "vz":
	default:
		return fmt.Errorf("invalid driver %q: use qemu or vz", c.Driver)
	}
	return nil
}

// LoadConfig reads and validates the instance's config.yaml.
func (i *Instance) LoadConfig() (*Config, error) {
	path := i.Path(ConfigFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config of instance %q: %w", i.Name, err)
	}
	c, err := ParseConfig(b)
	if err != nil {
		return nil, fmt.Errorf("%s is not a valid berth config: %w (fix the file, or delete the instance with \"berth delete %s\")", path, err, i.Name)
	}
	return c, nil
}

// ParseConfig decodes and validates config.yaml content. Unknown keys are
// errors, so a typo does not silently fall back to a default.
func ParseConfig(b []byte) (*Config, error) {
	c := DefaultConfig()
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// SaveConfig writes config.yaml atomically, so a crash leaves the old or the
// new file and never half of one.
func (i *Instance) SaveConfig(c *Config) error {
	if err := c.Validate(); err != nil {
		return err
	}
	b, err := yaml.Marshal(c)
	if err != nil {
		return fmt.Errorf("encoding config: %w", err)
	}
	b = append([]byte("# berth instance config; \"berth start --help\" explains the settings.\n"), b...)
	return WriteFileAtomic(i.Path(ConfigFile), b, 0o600)
}

// WriteFileAtomic writes data to a temporary file beside path and renames
// it into place.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Sync()
	}
	cerr := f.Close()
	if err := errors.Join(werr, cerr, os.Chmod(tmp, perm)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// Size is a byte count that reads and writes as "2GiB", "512MiB", "4G" or
// a plain number of bytes.
type Size int64

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
	{"TB", 1 << 40}, {"GB", 1 << 30}, {"MB", 1 << 20}, {"KB", 1 << 10},
	{"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10},
	{"B", 1},
}

// ParseSize reads a size such as "2GiB", "2G", "1.5GiB" or "1073741824".
// Units are binary, as memory and disk sizes are for VMs.
func ParseSize(s string) (Size, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(strings.ToUpper(t), strings.ToUpper(u.suffix)) {
			t = strings.TrimSpace(t[:len(t)-len(u.suffix)])
			mult = u.mult
			break
		}
	}
	if t == "" {
		return 0, fmt.Errorf("invalid size %q: use a number with a unit, such as 2GiB or 512MiB", s)
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f < 0 || f*float64(mult) > 1<<62 {
		return 0, fmt.Errorf("invalid size %q: use a number with a unit, such as 2GiB or 512MiB", s)
	}
	return Size(f * float64(mult)), nil
}

// String formats the size with the largest binary unit that keeps it exact
// to one decimal.
func (s Size) String() string {
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if int64(s) >= u.mult {
			v := float64(s) / float64(u.mult)
			if v == float64(int64(v)) {
				return fmt.Sprintf("%d%s", int64(v), u.suffix)
			}
			return strconv.FormatFloat(v, 'f', 1, 64) + u.suffix
		}
	}
	return fmt.Sprintf("%dB", int64(s))
}

// MarshalYAML writes the size in its readable form.
func (s Size) MarshalYAML() (any, error) { return s.String(), nil }

// UnmarshalYAML reads a size with or without a unit.
func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*s = v
	return nil
}
