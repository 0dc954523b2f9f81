// Package volumes is the engine's named volume store, Docker's "local"
// driver: each volume is a directory ROOT/NAME/_data with its metadata in
// ROOT/NAME/meta.json, which also records which containers use it, so an
// engine restart loses no reference.
//
// It owns creating, listing, removing and pruning volumes, the references
// containers hold on them, and the one-time copy of an image's content
// into a new volume. It does not mount anything (the shim bind-mounts
// _data), parse -v/--mount specs, or emit events; it supports no driver
// options (no tmpfs, nfs or bind volumes).
package volumes

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/berthvm/berth/guestagent/engine"
	"github.com/moby/moby/api/types/volume"
)

// AnonymousLabel marks volumes created without a name, as moby does.
const AnonymousLabel = "com.docker.volume.anonymous"

const (
	driverLocal = "local"
	dataDir     = "_data"
	metaFile    = "meta.json"
	// Directories being created or removed carry these prefixes, which a
	// volume name cannot start with; Open deletes what a crash left.
	creatingPrefix = ".creating-"
	removingPrefix = ".removing-"
)

// Docker's rule for names (daemon/names.RestrictedNameChars).
const nameChars = `[a-zA-Z0-9][a-zA-Z0-9_.-]`

var validName = regexp.MustCompile(`^` + nameChars + `+$`)

// Store is the volume store. It is safe for concurrent use.
type Store struct {
	root string
	log  *slog.Logger

	mu   sync.Mutex
	vols map[string]*vol
}

// vol is one volume; meta is guarded by Store.mu.
type vol struct {
	meta meta
	// copyMu serializes CopyUp on this volume.
	copyMu sync.Mutex
}

var _ engine.Volumes = (*Store)(nil)

// Mount is a volume as a container mounts it.
type Mount struct {
	Name    string
	Path    string // the _data directory
	Created bool   // Acquire created the volume
}

// Open loads the volumes under root, creating root if needed. Leftovers
// of a crash (half-created or half-removed volumes) are deleted; a
// volume whose metadata cannot be read is skipped with a warning.
func Open(root string, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(root, 0o701); err != nil {
		return nil, fmt.Errorf("opening the volume store: %w", err)
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("opening the volume store: %w", err)
	}
	s := &Store{root: abs, log: log, vols: map[string]*vol{}}
	ents, err := os.ReadDir(abs)
	if err != nil {
		return nil, fmt.Errorf("opening the volume store: %w", err)
	}
	for _, e := range ents {
		name := e.Name()
		dir := filepath.Join(abs, name)
		if strings.HasPrefix(name, creatingPrefix) || strings.HasPrefix(name, removingPrefix) {
			if err := os.RemoveAll(dir); err != nil {
				log.Warn("cannot delete a leftover volume directory", "dir", dir, "err", err)
			}
			continue
		}
		if !e.IsDir() || !validName.MatchString(name) {
			continue
		}
		m, err := readMeta(filepath.Join(dir, metaFile))
		if errors.Is(err, os.ErrNotExist) {
			// Not made by this store (Create renames complete volumes
			// into place): leave it alone unless it is empty.
			s.removeIfEmpty(dir)
			continue
		}
		if err != nil {
			log.Warn("skipping a volume with unreadable metadata", "volume", name, "err", err)
			continue
		}
		if m.Name != name {
			log.Warn("skipping a volume whose metadata names another", "dir", name, "meta", m.Name)
			continue
		}
		s.vols[name] = &vol{meta: m}
	}
	return s, nil
}

func (s *Store) removeIfEmpty(dir string) {
	data := filepath.Join(dir, dataDir)
	if ents, err := os.ReadDir(data); err == nil && len(ents) > 0 {
		s.log.Warn("skipping a volume directory without metadata", "dir", dir)
		return
	}
	os.Remove(data)
	if err := os.Remove(dir); err != nil {
		s.log.Warn("skipping a volume directory without metadata", "dir", dir, "err", err)
	}
}

func (s *Store) dir(name string) string  { return filepath.Join(s.root, name) }
func (s *Store) data(name string) string { return filepath.Join(s.root, name, dataDir) }

// Create makes a volume, or returns the existing one of that name. A
// name "" gets a random one.
func (s *Store) Create(ctx context.Context, req volume.CreateRequest) (volume.Volume, error) {
	if err := checkDriver(req.Driver); err != nil {
		return volume.Volume{}, err
	}
	if err := checkOpts(req.DriverOpts); err != nil {
		return volume.Volume{}, err
	}
	labels := req.Labels
	name := req.Name
	if name == "" {
		name = randomName()
		labels = maps.Clone(labels)
		if labels == nil {
			labels = map[string]string{}
		}
		labels[AnonymousLabel] = ""
	} else if err := checkName(name); err != nil {
		return volume.Volume{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.vols[name]; ok {
		return s.apiVolume(v), nil
	}
	v, err := s.create(name, labels, req.DriverOpts)
	if err != nil {
		return volume.Volume{}, err
	}
	return s.apiVolume(v), nil
}

// create makes the volume's directory under a temporary name and renames
// it into place, so a volume directory always has its metadata.
// Callers hold s.mu.
func (s *Store) create(name string, labels, opts map[string]string) (*vol, error) {
	tmp, err := os.MkdirTemp(s.root, creatingPrefix+name+"-")
	if err != nil {
		return nil, fmt.Errorf("creating volume %s: %w", name, err)
	}
	fail := func(err error) (*vol, error) {
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("creating volume %s: %w", name, err)
	}
	if err := os.Chmod(tmp, 0o701); err != nil {
		return fail(err)
	}
	if err := os.Mkdir(filepath.Join(tmp, dataDir), 0o755); err != nil {
		return fail(err)
	}
	m := meta{
		Name:      name,
		Driver:    driverLocal,
		CreatedAt: time.Now().UTC().Truncate(time.Second),
		Labels:    maps.Clone(labels),
		Options:   maps.Clone(opts),
	}
	if err := writeMeta(filepath.Join(tmp, metaFile), m); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, s.dir(name)); err != nil {
		return fail(err)
	}
	syncDir(s.root)
	v := &vol{meta: m}
	s.vols[name] = v
	return v, nil
}

// Inspect describes a volume.
func (s *Store) Inspect(ctx context.Context, name string) (volume.Volume, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.vols[name]
	if !ok {
		return volume.Volume{}, noSuchVolume(name)
	}
	return s.apiVolume(v), nil
}

// List returns the volumes matching the filters "name" (a substring or
// regular expression), "label" (key or key=value, all must match),
// "dangling" (true: not used by any container) and "driver".
func (s *Store) List(ctx context.Context, filters map[string][]string) ([]volume.Volume, error) {
	f, err := parseFilters(filters, "name", "label", "dangling", "driver")
	if err != nil {
		return nil, err
	}
	var dangling *bool
	if _, ok := filters["dangling"]; ok {
		b, err := boolFilter(filters, "dangling")
		if err != nil {
			return nil, err
		}
		dangling = &b
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []volume.Volume{}
	for _, v := range s.sorted() {
		m := &v.meta
		if !f.matchAny("name", m.Name) || !f.matchAny("driver", m.Driver) || !f.labels("label", m.Labels) {
			continue
		}
		if dangling != nil && (len(m.Refs) == 0) != *dangling {
			continue
		}
		out = append(out, s.apiVolume(v))
	}
	return out, nil
}

// Remove deletes a volume. One in use by a container is ErrConflict
// unless force (dockerd refuses even then; the engine contract allows
// it).
func (s *Store) Remove(ctx context.Context, name string, force bool) error {
	s.mu.Lock()
	v, ok := s.vols[name]
	if !ok {
		s.mu.Unlock()
		return noSuchVolume(name)
	}
	if len(v.meta.Refs) > 0 && !force {
		refs := slices.Clone(v.meta.Refs)
		s.mu.Unlock()
		return engine.WithKind(engine.ErrConflict, fmt.Sprintf("remove %s: volume is in use - [%s]", name, strings.Join(refs, ", ")))
	}
	gone, err := s.detach(name)
	s.mu.Unlock()
	if err != nil {
		return err
	}
	return s.purge(gone)
}

// detach renames a volume's directory out of the way and forgets it, so
// that deleting its data needs no lock. Callers hold s.mu.
func (s *Store) detach(name string) (string, error) {
	gone := filepath.Join(s.root, removingPrefix+name+"-"+randomName()[:8])
	if err := os.Rename(s.dir(name), gone); err != nil {
		return "", fmt.Errorf("removing volume %s: %w", name, err)
	}
	delete(s.vols, name)
	return gone, nil
}

func (s *Store) purge(gone string) error {
	if err := removeAll(gone); err != nil {
		// Open finishes the job on the next start.
		s.log.Warn("cannot delete a removed volume's data", "dir", gone, "err", err)
	}
	return nil
}

// Prune removes the volumes no container uses: only anonymous ones
// unless the filter all=true, and only those matching the "label" and
// "label!" filters.
func (s *Store) Prune(ctx context.Context, filters map[string][]string) (volume.PruneReport, error) {
	f, err := parseFilters(filters, "label", "label!", "all")
	if err != nil {
		return volume.PruneReport{}, err
	}
	all := false
	if vals := filters["all"]; len(vals) > 1 {
		return volume.PruneReport{}, engine.WithKind(engine.ErrInvalid, fmt.Sprintf("invalid filter 'all=%s': only one value is expected", vals))
	} else if len(vals) == 1 {
		if all, err = strconv.ParseBool(vals[0]); err != nil {
			return volume.PruneReport{}, engine.WithKind(engine.ErrInvalid, fmt.Sprintf("invalid filter 'all': %v", err))
		}
	}
	rep := volume.PruneReport{VolumesDeleted: []string{}}
	var gone []string
	s.mu.Lock()
	for _, v := range s.sorted() {
		m := &v.meta
		if len(m.Refs) > 0 || !f.labels("label", m.Labels) {
			continue
		}
		if !all {
			if _, anon := m.Labels[AnonymousLabel]; !anon {
				continue
			}
		}
		if _, ok := filters["label!"]; ok && f.labels("label!", m.Labels) {
			continue
		}
		g, err := s.detach(m.Name)
		if err != nil {
			s.log.Warn("cannot prune a volume", "volume", m.Name, "err", err)
			continue
		}
		gone = append(gone, g)
		rep.VolumesDeleted = append(rep.VolumesDeleted, m.Name)
	}
	s.mu.Unlock()
	for _, g := range gone {
		if size, err := dirSize(ctx, filepath.Join(g, dataDir)); err == nil {
			rep.SpaceReclaimed += uint64(size)
		}
		s.purge(g)
	}
	return rep, nil
}

// Acquire returns the volume name, creating it when missing (with the
// anonymous label when anonymous, or a random name when name is ""), and
// records containerID as one of its users. It is idempotent per (name,
// containerID).
func (s *Store) Acquire(ctx context.Context, name, containerID string, anonymous bool) (Mount, error) {
	if containerID == "" {
		return Mount{}, engine.WithKind(engine.ErrInvalid, "acquiring a volume: no container ID")
	}
	if name == "" {
		name, anonymous = randomName(), true
	} else if err := checkName(name); err != nil {
		return Mount{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.vols[name]
	created := false
	if !ok {
		var labels map[string]string
		if anonymous {
			labels = map[string]string{AnonymousLabel: ""}
		}
		var err error
		if v, err = s.create(name, labels, nil); err != nil {
			return Mount{}, err
		}
		created = true
	}
	if !slices.Contains(v.meta.Refs, containerID) {
		m := v.meta
		m.Refs = append(slices.Clone(m.Refs), containerID)
		slices.Sort(m.Refs)
		if err := s.save(v, m); err != nil {
			return Mount{}, fmt.Errorf("acquiring volume %s: %w", name, err)
		}
	}
	return Mount{Name: name, Path: s.data(name), Created: created}, nil
}

// Release drops containerID's reference on the volume; an absent
// volume or reference is no error.
func (s *Store) Release(name, containerID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.vols[name]
	if !ok {
		return nil
	}
	return s.release(v, containerID)
}

// release drops a reference. Callers hold s.mu.
func (s *Store) release(v *vol, containerID string) error {
	i := slices.Index(v.meta.Refs, containerID)
	if i < 0 {
		return nil
	}
	m := v.meta
	m.Refs = slices.Delete(slices.Clone(m.Refs), i, i+1)
	if err := s.save(v, m); err != nil {
		return fmt.Errorf("releasing volume %s: %w", v.meta.Name, err)
	}
	return nil
}

// ReleaseAll drops containerID's references on every volume and returns
// the names of the anonymous volumes it used (for `docker rm -v`; other
// containers may still use them, which Remove reports).
func (s *Store) ReleaseAll(containerID string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var anon []string
	var errs []error
	for _, v := range s.sorted() {
		if !slices.Contains(v.meta.Refs, containerID) {
			continue
		}
		if _, ok := v.meta.Labels[AnonymousLabel]; ok {
			anon = append(anon, v.meta.Name)
		}
		errs = append(errs, s.release(v, containerID))
	}
	return anon, errors.Join(errs...)
}

// Usage returns every volume with its UsageData (size of its data,
// -1 when it cannot be read, and how many containers use it), for
// `docker system df`.
func (s *Store) Usage(ctx context.Context) ([]volume.Volume, error) {
	s.mu.Lock()
	vols := make([]volume.Volume, 0, len(s.vols))
	var refs []int64
	for _, v := range s.sorted() {
		vols = append(vols, s.apiVolume(v))
		refs = append(refs, int64(len(v.meta.Refs)))
	}
	s.mu.Unlock()
	for i := range vols {
		size, err := dirSize(ctx, vols[i].Mountpoint)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			size = -1
		}
		vols[i].UsageData = &volume.UsageData{Size: size, RefCount: refs[i]}
	}
	return vols, nil
}

// save persists m as v's metadata and then adopts it. Callers hold s.mu.
func (s *Store) save(v *vol, m meta) error {
	if err := writeMeta(filepath.Join(s.dir(m.Name), metaFile), m); err != nil {
		return err
	}
	v.meta = m
	return nil
}

// sorted returns the volumes by name. Callers hold s.mu.
func (s *Store) sorted() []*vol {
	out := slices.Collect(maps.Values(s.vols))
	slices.SortFunc(out, func(a, b *vol) int { return cmp.Compare(a.meta.Name, b.meta.Name) })
	return out
}

// apiVolume converts v. Callers hold s.mu.
func (s *Store) apiVolume(v *vol) volume.Volume {
	m := &v.meta
	return volume.Volume{
		Name:       m.Name,
		Driver:     m.Driver,
		Mountpoint: s.data(m.Name),
		CreatedAt:  m.CreatedAt.Format(time.RFC3339),
		Labels:     maps.Clone(m.Labels),
		Options:    maps.Clone(m.Options),
		Scope:      "local",
	}
}

func noSuchVolume(name string) error {
	return engine.WithKind(engine.ErrNotFound, fmt.Sprintf("get %s: no such volume", name))
}

func checkName(name string) error {
	if len(name) == 1 {
		return engine.WithKind(engine.ErrInvalid, "volume name is too short, names should be at least two alphanumeric characters")
	}
	if !validName.MatchString(name) {
		return engine.WithKind(engine.ErrInvalid, fmt.Sprintf("%q includes invalid characters for a local volume name, only %q are allowed. If you intended to pass a host directory, use absolute path", name, nameChars))
	}
	return nil
}

func checkDriver(d string) error {
	if d != "" && d != driverLocal {
		return engine.WithKind(engine.ErrInvalid, fmt.Sprintf("volume driver %s is not supported", d))
	}
	return nil
}

// checkOpts rejects driver options: the local driver's type/o/device
// mounts (tmpfs, nfs, bind) are not supported.
func checkOpts(opts map[string]string) error {
	if len(opts) == 0 {
		return nil
	}
	keys := slices.Sorted(maps.Keys(opts))
	for _, k := range keys {
		switch k {
		case "type", "o", "device", "size":
		default:
			return engine.WithKind(engine.ErrInvalid, fmt.Sprintf("invalid option: %q", k))
		}
	}
	return engine.WithKind(engine.ErrInvalid, fmt.Sprintf("volume options are not supported (%s)", strings.Join(keys, ", ")))
}

func randomName() string {
	var b [32]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// filterSet is a decoded filters map.
type filterSet map[string][]string

// parseFilters rejects filters other than the accepted ones, with
// dockerd's message.
func parseFilters(filters map[string][]string, accepted ...string) (filterSet, error) {
	keys := slices.Sorted(maps.Keys(filters))
	for _, k := range keys {
		if !slices.Contains(accepted, k) {
			return nil, engine.WithKind(engine.ErrInvalid, fmt.Sprintf("invalid filter '%s'", k))
		}
	}
	return filterSet(filters), nil
}

// matchAny is dockerd's Args.Match: no values match everything; else a
// value equal to s or a regular expression found in s.
func (f filterSet) matchAny(key, s string) bool {
	vals := f[key]
	if len(vals) == 0 {
		return true
	}
	for _, v := range vals {
		if v == s {
			return true
		}
	}
	for _, v := range vals {
		if re, err := regexp.Compile(v); err == nil && re.MatchString(s) {
			return true
		}
	}
	return false
}

// labels is dockerd's Args.MatchKVList: every value, "key" or
// "key=value", must be among labels.
func (f filterSet) labels(key string, labels map[string]string) bool {
	vals := f[key]
	if len(vals) == 0 {
		return true
	}
	for _, v := range vals {
		k, want, hasValue := strings.Cut(v, "=")
		got, ok := labels[k]
		if !ok || (hasValue && got != want) {
			return false
		}
	}
	return true
}

// boolFilter reads a true/false filter as dockerd's GetBoolOrDefault.
func boolFilter(filters map[string][]string, key string) (bool, error) {
	vals := filters[key]
	isFalse := slices.Contains(vals, "0") || slices.Contains(vals, "false")
	isTrue := slices.Contains(vals, "1") || slices.Contains(vals, "true")
	if isFalse == isTrue {
		sorted := slices.Clone(vals)
		sort.Strings(sorted)
		return false, engine.WithKind(engine.ErrInvalid, fmt.Sprintf("invalid filter '%s=%s'", key, sorted))
	}
	return isTrue, nil
}
