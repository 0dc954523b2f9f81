package daemon

import (
	"fmt"
	"maps"
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
)

// mountPoint is one of a container's mounts as recorded at create: what
// Inspect shows and what Start mounts.
type mountPoint struct {
	Type        mount.Type        `json:"type"`
	Name        string            `json:"name,omitempty"`   // volume name
	Source      string            `json:"source,omitempty"` // host path (bind) or volume dir
	Destination string            `json:"destination"`
	RW          bool              `json:"rw"`
	Mode        string            `json:"mode,omitempty"` // the user's options, as inspect shows them
	Propagation mount.Propagation `json:"propagation,omitempty"`
	// Anonymous volumes are removed with the container by rm -v.
	Anonymous bool `json:"anonymous,omitempty"`
	// NoCopy: do not populate a new volume from the image.
	NoCopy  bool   `json:"nocopy,omitempty"`
	Subpath string `json:"subpath,omitempty"`
	// NonRecursive binds do not carry submounts.
	NonRecursive bool `json:"nonrecursive,omitempty"`
	// CreateSource: a missing bind source is created (-v does, --mount does not).
	CreateSource bool              `json:"create_source,omitempty"`
	TmpfsOptions []string          `json:"tmpfs_options,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"` // for a volume created by this mount
}

var volumeName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

func isValidVolumeName(n string) bool { return volumeName.MatchString(n) }

// defaultTmpfsOptions are Docker's for --tmpfs and --mount type=tmpfs.
var defaultTmpfsOptions = []string{"rw", "noexec", "nosuid", "nodev"}

// tmpfsOptions merges user options over the defaults: "exec" cancels
// "noexec" and so on; the last of a pair wins.
func tmpfsOptions(user []string) []string {
	opposite := map[string]string{
		"exec": "noexec", "noexec": "exec", "suid": "nosuid", "nosuid": "suid",
		"dev": "nodev", "nodev": "dev", "ro": "rw", "rw": "ro",
	}
	out := slices.Clone(defaultTmpfsOptions)
	for _, o := range user {
		o = strings.TrimSpace(o)
		if o == "" {
			continue
		}
		if opp, ok := opposite[o]; ok {
			out = slices.DeleteFunc(out, func(x string) bool { return x == opp || x == o })
		} else if k, _, ok := strings.Cut(o, "="); ok {
			out = slices.DeleteFunc(out, func(x string) bool { return strings.HasPrefix(x, k+"=") })
		}
		out = append(out, o)
	}
	return out
}

func checkTarget(spec, dst string) error {
	if dst == "" {
		return invalidf("invalid volume specification: '%s': invalid mount config: field Target must not be empty", spec)
	}
	if !path.IsAbs(dst) {
		return invalidf("invalid volume specification: '%s': invalid mount config: invalid mount path: '%s' mount path must be absolute", spec, dst)
	}
	if path.Clean(dst) == "/" {
		return invalidf("invalid volume specification: '%s': invalid mount config: destination can't be '/'", spec)
	}
	return nil
}

var propagations = map[string]mount.Propagation{
	"private": mount.PropagationPrivate, "rprivate": mount.PropagationRPrivate,
	"shared": mount.PropagationShared, "rshared": mount.PropagationRShared,
	"slave": mount.PropagationSlave, "rslave": mount.PropagationRSlave,
}

// parseBind reads a -v spec: "dst" (anonymous volume), "src:dst" or
// "src:dst:opts", src being an absolute host path or a volume name.
func parseBind(spec string) (mountPoint, error) {
	parts := strings.Split(spec, ":")
	var src, dst, mode string
	switch len(parts) {
	case 1:
		dst = parts[0]
	case 2:
		if validBindMode(parts[1]) == nil {
			return mountPoint{}, invalidf("invalid volume specification: '%s'", spec)
		}
		src, dst = parts[0], parts[1]
	case 3:
		src, dst, mode = parts[0], parts[1], parts[2]
	default:
		return mountPoint{}, invalidf("invalid volume specification: '%s'", spec)
	}
	if err := checkTarget(spec, dst); err != nil {
		return mountPoint{}, err
	}
	mp := mountPoint{Destination: path.Clean(dst), RW: true, Mode: mode}
	switch {
	case src == "":
		mp.Type, mp.Anonymous = mount.TypeVolume, true
	case path.IsAbs(src):
		mp.Type, mp.Source, mp.CreateSource = mount.TypeBind, path.Clean(src), true
		mp.Propagation = mount.PropagationRPrivate
	case isValidVolumeName(src):
		mp.Type, mp.Name = mount.TypeVolume, src
	default:
		return mountPoint{}, invalidf("create %s: %q includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path", src, src)
	}
	if mode != "" {
		if err := validBindMode(mode); err != nil {
			return mountPoint{}, invalidf("invalid volume specification: '%s': %v", spec, err)
		}
		for _, o := range strings.Split(mode, ",") {
			switch o {
			case "ro":
				mp.RW = false
			case "nocopy":
				if mp.Type != mount.TypeVolume {
					return mountPoint{}, invalidf("invalid volume specification: '%s': nocopy is only valid for volumes", spec)
				}
				mp.NoCopy = true
			default:
				if p, ok := propagations[o]; ok {
					if mp.Type != mount.TypeBind {
						return mountPoint{}, invalidf("invalid volume specification: '%s': propagation is only valid for bind mounts", spec)
					}
					mp.Propagation = p
				}
			}
		}
	}
	return mp, nil
}

// validBindMode checks the options of a -v spec.
func validBindMode(mode string) error {
	var rw, label, prop, cons, nocopy int
	for _, o := range strings.Split(mode, ",") {
		switch o {
		case "ro", "rw":
			rw++
		case "z", "Z":
			label++
		case "consistent", "cached", "delegated":
			cons++
		case "nocopy":
			nocopy++
		default:
			if _, ok := propagations[o]; !ok {
				return fmt.Errorf("invalid mode: %s", mode)
			}
			prop++
		}
	}
	if rw > 1 || label > 1 || prop > 1 || cons > 1 || nocopy > 1 {
		return fmt.Errorf("invalid mode: %s", mode)
	}
	return nil
}

// parseMount reads one --mount.
func parseMount(m mount.Mount) (mountPoint, error) {
	spec := fmt.Sprintf("%s:%s", m.Source, m.Target)
	if err := checkTarget(spec, m.Target); err != nil {
		return mountPoint{}, err
	}
	mp := mountPoint{Type: m.Type, Destination: path.Clean(m.Target), RW: !m.ReadOnly}
	bad := func(format string, args ...any) error {
		return invalidf("invalid mount config for type %q: %s", m.Type, fmt.Sprintf(format, args...))
	}
	if m.Type != mount.TypeBind && m.BindOptions != nil {
		return mountPoint{}, bad("bind options are only valid for bind mounts")
	}
	if m.Type != mount.TypeVolume && m.VolumeOptions != nil {
		return mountPoint{}, bad("volume options are only valid for volumes")
	}
	if m.Type != mount.TypeTmpfs && m.TmpfsOptions != nil {
		return mountPoint{}, bad("tmpfs options are only valid for tmpfs mounts")
	}
	switch m.Type {
	case mount.TypeBind:
		if m.Source == "" {
			return mountPoint{}, bad("field Source must not be empty")
		}
		if !path.IsAbs(m.Source) {
			return mountPoint{}, bad("invalid mount path: '%s' mount path must be absolute", m.Source)
		}
		mp.Source = path.Clean(m.Source)
		mp.Propagation = mount.PropagationRPrivate
		if o := m.BindOptions; o != nil {
			if o.Propagation != "" {
				if _, ok := propagations[string(o.Propagation)]; !ok {
					return mountPoint{}, bad("invalid propagation mode: %s", o.Propagation)
				}
				mp.Propagation = o.Propagation
			}
			mp.NonRecursive = o.NonRecursive
			mp.CreateSource = o.CreateMountpoint
		}
		if !mp.CreateSource {
			if _, err := os.Stat(mp.Source); err != nil {
				return mountPoint{}, bad("bind source path does not exist: %s", mp.Source)
			}
		}
	case mount.TypeVolume:
		if m.Source == "" {
			mp.Anonymous = true
		} else if !isValidVolumeName(m.Source) {
			return mountPoint{}, bad("invalid volume name %q", m.Source)
		}
		mp.Name = m.Source
		if o := m.VolumeOptions; o != nil {
			mp.NoCopy = o.NoCopy
			mp.Labels = maps.Clone(o.Labels)
			if o.Subpath != "" {
				sp := path.Clean(o.Subpath)
				if path.IsAbs(sp) || sp == ".." || strings.HasPrefix(sp, "../") {
					return mountPoint{}, bad("subpath must be a relative path within the volume")
				}
				mp.Subpath = sp
			}
			if o.DriverConfig != nil && o.DriverConfig.Name != "" && o.DriverConfig.Name != "local" {
				return mountPoint{}, bad("volume driver %q is not supported (local)", o.DriverConfig.Name)
			}
		}
	case mount.TypeTmpfs:
		if m.Source != "" {
			return mountPoint{}, bad("field Source must not be specified")
		}
		var opts []string
		if o := m.TmpfsOptions; o != nil {
			if o.SizeBytes < 0 {
				return mountPoint{}, bad("invalid size %d", o.SizeBytes)
			}
			if o.SizeBytes > 0 {
				opts = append(opts, "size="+strconv.FormatInt(o.SizeBytes, 10))
			}
			if o.Mode != 0 {
				opts = append(opts, fmt.Sprintf("mode=%o", unixMode(o.Mode)))
			}
			for _, kv := range o.Options {
				if len(kv) == 1 {
					opts = append(opts, kv[0])
				} else if len(kv) == 2 {
					opts = append(opts, kv[0]+"="+kv[1])
				}
			}
		}
		if m.ReadOnly {
			opts = append(opts, "ro")
		}
		mp.TmpfsOptions = tmpfsOptions(opts)
		mp.RW = !slices.Contains(mp.TmpfsOptions, "ro")
	case "":
		return mountPoint{}, invalidf("invalid mount config: mount type unknown")
	default:
		return mountPoint{}, invalidf("invalid mount config: mount type %q is not supported by berth (bind, volume, tmpfs)", m.Type)
	}
	return mp, nil
}

// parseMounts collects a container's mounts: Binds, Mounts, Tmpfs, then an
// anonymous volume for each Config.Volumes path (the image's VOLUMEs and
// `-v /path`) that nothing else mounts. Two mounts on one destination are
// an error. The result is sorted parents first, the order they mount in.
func parseMounts(hc *container.HostConfig, cfg *container.Config) ([]mountPoint, error) {
	var out []mountPoint
	seen := map[string]bool{}
	add := func(mp mountPoint) error {
		if seen[mp.Destination] {
			return invalidf("Duplicate mount point: %s", mp.Destination)
		}
		seen[mp.Destination] = true
		out = append(out, mp)
		return nil
	}
	for _, b := range hc.Binds {
		mp, err := parseBind(b)
		if err != nil {
			return nil, err
		}
		if err := add(mp); err != nil {
			return nil, err
		}
	}
	for _, m := range hc.Mounts {
		mp, err := parseMount(m)
		if err != nil {
			return nil, err
		}
		if err := add(mp); err != nil {
			return nil, err
		}
	}
	dsts := slices.Sorted(maps.Keys(hc.Tmpfs))
	for _, dst := range dsts {
		if err := checkTarget(dst, dst); err != nil {
			return nil, err
		}
		mp := mountPoint{Type: mount.TypeTmpfs, Destination: path.Clean(dst), Mode: hc.Tmpfs[dst]}
		mp.TmpfsOptions = tmpfsOptions(strings.Split(hc.Tmpfs[dst], ","))
		mp.RW = !slices.Contains(mp.TmpfsOptions, "ro")
		if err := add(mp); err != nil {
			return nil, err
		}
	}
	if cfg != nil {
		for _, dst := range slices.Sorted(maps.Keys(cfg.Volumes)) {
			if err := checkTarget(dst, dst); err != nil {
				return nil, err
			}
			d := path.Clean(dst)
			if seen[d] {
				continue
			}
			seen[d] = true
			out = append(out, mountPoint{Type: mount.TypeVolume, Destination: d, RW: true, Anonymous: true})
		}
	}
	slices.SortStableFunc(out, func(a, b mountPoint) int {
		return strings.Count(a.Destination, "/") - strings.Count(b.Destination, "/")
	})
	return out, nil
}

// unixMode turns a FileMode as clients send it (the CLI sends the octal
// number as is; Go clients may use os.ModeSticky) into permission bits.
func unixMode(m os.FileMode) uint32 {
	out := uint32(m) & 0o7777
	if m&os.ModeSticky != 0 {
		out |= 0o1000
	}
	if m&os.ModeSetgid != 0 {
		out |= 0o2000
	}
	if m&os.ModeSetuid != 0 {
		out |= 0o4000
	}
	return out
}
