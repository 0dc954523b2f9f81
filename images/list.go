package images

import (
	"context"
	"encoding/json"
	"maps"
	"sort"
	"strconv"
	"strings"
	"time"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/storage"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthvm/berth/images/reference"
)

// Filters are Docker API filters: key -> accepted values.
type Filters map[string][]string

// ParseFilters decodes the "filters" query parameter of the Docker API,
// in both its shapes: {"key":{"value":true}} and the legacy
// {"key":["value"]}. An empty string is no filter.
func ParseFilters(s string) (Filters, error) {
	if s == "" {
		return Filters{}, nil
	}
	var modern map[string]map[string]bool
	if err := json.Unmarshal([]byte(s), &modern); err == nil {
		f := Filters{}
		for k, vs := range modern {
			for v, on := range vs {
				if on {
					f[k] = append(f[k], v)
				}
			}
			sort.Strings(f[k])
		}
		return f, nil
	}
	var legacy map[string][]string
	if err := json.Unmarshal([]byte(s), &legacy); err != nil {
		return nil, invalidf("invalid filters: %v", err)
	}
	return Filters(legacy), nil
}

func (f Filters) check(allowed ...string) error {
	for k := range f {
		ok := false
		for _, a := range allowed {
			if k == a {
				ok = true
			}
		}
		if !ok {
			return invalidf("invalid filter '%s'", k)
		}
	}
	return nil
}

// bool returns the value of a boolean filter and whether it is set.
func (f Filters) bool(key string) (value, set bool, err error) {
	vs := f[key]
	switch len(vs) {
	case 0:
		return false, false, nil
	case 1:
	default:
		return false, false, invalidf("invalid filter '%s': only one value allowed", key)
	}
	switch strings.ToLower(vs[0]) {
	case "true", "1":
		return true, true, nil
	case "false", "0":
		return false, true, nil
	}
	return false, false, invalidf("invalid filter '%s=%s'", key, vs[0])
}

// matchLabels reports whether labels satisfy every "key" / "key=value"
// in want.
func matchLabels(labels map[string]string, want []string) bool {
	for _, w := range want {
		k, v, hasValue := strings.Cut(w, "=")
		got, ok := labels[k]
		if !ok || (hasValue && got != v) {
			return false
		}
	}
	return true
}

// parseTimestamp reads an "until" value: a Go duration before now, unix
// seconds (with optional fraction) or an RFC 3339 date or time.
func parseTimestamp(v string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(v); err == nil {
		return now.Add(-d), nil
	}
	if secs, frac, ok := strings.Cut(v, "."); ok || secs != "" {
		if s, err := strconv.ParseInt(secs, 10, 64); err == nil {
			ns := int64(0)
			if ok {
				f, err := strconv.ParseFloat("0."+frac, 64)
				if err != nil {
					return time.Time{}, invalidf("invalid timestamp %q", v)
				}
				ns = int64(f * 1e9)
			}
			return time.Unix(s, ns), nil
		}
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, v, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, invalidf("invalid timestamp %q", v)
}

// ListOptions tunes List.
type ListOptions struct {
	// All includes intermediate images (untagged parents of others).
	All bool
	// Filters: dangling, label, before, since, reference, until.
	Filters Filters
}

// List returns `docker images` data, newest first.
func (s *Store) List(ctx context.Context, opts ListOptions) ([]image.Summary, error) {
	f := opts.Filters
	if err := f.check("dangling", "label", "before", "since", "reference", "until"); err != nil {
		return nil, err
	}
	dangling, danglingSet, err := f.bool("dangling")
	if err != nil {
		return nil, err
	}
	now := time.Now()
	var until time.Time
	if vs := f["until"]; len(vs) > 0 {
		if until, err = parseTimestamp(vs[0], now); err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var before, since time.Time
	for _, b := range f["before"] {
		r, _, err := s.resolveLocked(b)
		if err != nil {
			return nil, err
		}
		before = r.Created
	}
	for _, b := range f["since"] {
		r, _, err := s.resolveLocked(b)
		if err != nil {
			return nil, err
		}
		since = r.Created
	}
	patterns := f["reference"]

	out := []image.Summary{}
	for _, r := range s.images {
		tags, digests := s.refsOfLocked(r.ID)
		if danglingSet && dangling != (len(tags) == 0) {
			continue
		}
		if len(tags) == 0 && len(digests) == 0 && !opts.All && len(s.childrenLocked(r.ID)) > 0 {
			continue // intermediate image
		}
		if !before.IsZero() && !r.Created.Before(before) {
			continue
		}
		if !since.IsZero() && !r.Created.After(since) {
			continue
		}
		if !until.IsZero() && !r.Created.Before(until) {
			continue
		}
		if len(patterns) > 0 {
			tags, digests = matchRefs(tags, patterns), matchRefs(digests, patterns)
			if len(tags) == 0 && len(digests) == 0 {
				continue
			}
		}
		var labels map[string]string
		if cfg, err := s.configLocked(r.ID); err == nil {
			labels = maps.Clone(cfg.Config.Labels)
		}
		if !matchLabels(labels, f["label"]) {
			continue
		}
		sum := image.Summary{
			ID:          r.ID.String(),
			ParentID:    parentString(r.Parent),
			RepoTags:    familiar(tags),
			RepoDigests: familiar(digests),
			Created:     r.Created.Unix(),
			Size:        r.size(),
			SharedSize:  -1,
			Containers:  -1,
			Labels:      labels,
		}
		if sum.Labels == nil {
			sum.Labels = map[string]string{}
		}
		out = append(out, sum)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Created != out[j].Created {
			return out[i].Created > out[j].Created
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

func matchRefs(refs []reference.Reference, patterns []string) []reference.Reference {
	var out []reference.Reference
	for _, r := range refs {
		for _, p := range patterns {
			if r.MatchFamiliar(p) {
				out = append(out, r)
				break
			}
		}
	}
	return out
}

func parentString(d digest.Digest) string {
	if d == "" {
		return ""
	}
	return d.String()
}

// configLocked is config for callers holding s.mu; callers must not
// modify the result.
func (s *Store) configLocked(id digest.Digest) (*dockerspec.DockerOCIImage, error) {
	if c, ok := s.configs[id]; ok {
		return c, nil
	}
	c, err := s.readConfig(id)
	if err != nil {
		return nil, err
	}
	s.configs[id] = c
	return c, nil
}

// Inspect returns `docker image inspect` data.
func (s *Store) Inspect(ctx context.Context, refOrID string) (image.InspectResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, _, err := s.resolveLocked(refOrID)
	if err != nil {
		return image.InspectResponse{}, err
	}
	cached, err := s.configLocked(r.ID)
	if err != nil {
		return image.InspectResponse{}, err
	}
	cfg, err := copyConfig(cached)
	if err != nil {
		return image.InspectResponse{}, err
	}
	tags, digests := s.refsOfLocked(r.ID)
	resp := image.InspectResponse{
		ID:           r.ID.String(),
		RepoTags:     familiar(tags),
		RepoDigests:  familiar(digests),
		Author:       cfg.Author,
		Architecture: cfg.Architecture,
		Variant:      cfg.Variant,
		Os:           cfg.OS,
		OsVersion:    cfg.OSVersion,
		Size:         r.size(),
		RootFS:       image.RootFS{Type: "layers"},
		Metadata:     image.Metadata{LastTagTime: r.LastTagTime},
	}
	config := cfg.Config
	resp.Config = &config
	if cfg.Created != nil {
		resp.Created = cfg.Created.UTC().Format(time.RFC3339Nano)
	}
	if n := len(cfg.History); n > 0 {
		resp.Comment = cfg.History[n-1].Comment
	}
	for _, l := range r.Layers {
		resp.RootFS.Layers = append(resp.RootFS.Layers, l.DiffID.String())
	}
	if n := len(r.Layers); n > 0 {
		data := map[string]string{"UpperDir": s.snapshots.Path(r.Layers[n-1].ChainID)}
		var lowers []string
		for i := n - 2; i >= 0; i-- {
			lowers = append(lowers, s.snapshots.Path(r.Layers[i].ChainID))
		}
		if len(lowers) > 0 {
			data["LowerDir"] = strings.Join(lowers, ":")
		}
		resp.GraphDriver = &storage.DriverData{Name: "overlay2", Data: data}
	}
	return resp, nil
}

// History returns `docker history` data, newest first. Entries of a
// parent image (for committed images) carry its ID and tags; others are
// "<missing>", as for pulled images in dockerd.
func (s *Store) History(ctx context.Context, refOrID string) ([]image.HistoryResponseItem, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, _, err := s.resolveLocked(refOrID)
	if err != nil {
		return nil, err
	}
	cfg, err := s.configLocked(r.ID)
	if err != nil {
		return nil, err
	}
	hist := cfg.History
	if len(hist) == 0 {
		// Images without history get one line per layer.
		for range r.Layers {
			hist = append(hist, ocispec.History{})
		}
	}
	items := make([]image.HistoryResponseItem, len(hist))
	layerIdx := 0
	for i, h := range hist {
		it := image.HistoryResponseItem{ID: "<missing>", CreatedBy: h.CreatedBy, Comment: h.Comment, Tags: []string{}}
		if h.Created != nil {
			it.Created = h.Created.Unix()
		}
		if !h.EmptyLayer && layerIdx < len(r.Layers) {
			it.Size = r.Layers[layerIdx].Size
			layerIdx++
		}
		items[i] = it
	}
	// Label the newest entry of this image and of each parent with its ID.
	for cur := r; cur != nil; {
		pc, err := s.configLocked(cur.ID)
		if err != nil {
			break
		}
		n := len(pc.History)
		if cur == r {
			n = len(items)
		}
		if n > 0 && n <= len(items) {
			tags, _ := s.refsOfLocked(cur.ID)
			items[n-1].ID = cur.ID.String()
			items[n-1].Tags = familiar(tags)
		}
		if cur.Parent == "" {
			break
		}
		cur = s.images[cur.Parent]
	}
	for i, j := 0, len(items)-1; i < j; i, j = i+1, j-1 {
		items[i], items[j] = items[j], items[i]
	}
	return items, nil
}
