package images

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/moby/moby/api/types/image"
	"github.com/opencontainers/go-digest"

	"github.com/berthvm/berth/images/reference"
)

// Tag points target (a "repo[:tag]" reference; tag defaults to latest)
// at the image source names. A tag that pointed elsewhere moves.
func (s *Store) Tag(ctx context.Context, source, target string) error {
	ref, err := reference.Parse(target)
	if err != nil {
		return withKind(ErrInvalid, err, "tagging %s", target)
	}
	if ref.Digest != "" {
		return invalidf("refusing to create a tag with a digest reference")
	}
	if ref.Tag == "" {
		ref.Tag = reference.DefaultTag
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, _, err := s.resolveLocked(source)
	if err != nil {
		return err
	}
	s.refs[ref.String()] = r.ID
	r.LastTagTime = time.Now().UTC()
	if err := s.saveRecordLocked(r); err != nil {
		return err
	}
	return s.saveRefsLocked()
}

// RemoveOptions tunes Remove.
type RemoveOptions struct {
	// Force removes an image referenced in several repositories, and
	// untags an image containers use (the image itself stays while they
	// do: its layers are their lower dirs).
	Force bool
	// NoPrune keeps untagged parents of a removed image.
	NoPrune bool
	// InUse reports whether a container uses an image (by ID). Nil means
	// none does.
	InUse func(imageID string) bool
}

// Remove implements `docker rmi`: a reference is untagged first, and the
// image is deleted when no reference is left; an ID deletes the image and
// its references. It returns what was untagged and deleted (image ID,
// then chain IDs of the removed layers), as dockerd does.
func (s *Store) Remove(ctx context.Context, refOrID string, opts RemoveOptions) ([]image.DeleteResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, refKey, err := s.resolveLocked(refOrID)
	if err != nil {
		return nil, err
	}
	inUse := func(id digest.Digest) bool { return opts.InUse != nil && opts.InUse(id.String()) }
	var out []image.DeleteResponse
	untag := func(ref reference.Reference) error {
		delete(s.refs, ref.String())
		out = append(out, image.DeleteResponse{Untagged: ref.FamiliarString()})
		return nil
	}
	defer func() {
		if len(out) > 0 {
			if err := s.saveRefsLocked(); err != nil {
				s.log.Error("saving references", "err", err)
			}
		}
	}()
	tags, digests := s.refsOfLocked(r.ID)
	quiet := false // the last reference went: conflicts keep the image silently
	if refKey != "" {
		ref, _ := reference.Parse(refKey)
		if !opts.Force && singleRepo(tags, digests) && inUse(r.ID) {
			return nil, conflictf("conflict: unable to remove repository reference %q (must force) - container is using its referenced image %s", refOrID, shortID(r.ID))
		}
		_ = untag(ref)
		if ref.Digest == "" {
			// The last tag of a repository takes its digest references along.
			tags, _ = s.refsOfLocked(r.ID)
			sameRepo := false
			for _, t := range tags {
				if t.Name() == ref.Name() {
					sameRepo = true
				}
			}
			if !sameRepo {
				for _, d := range digests {
					if d.Name() == ref.Name() {
						_ = untag(d)
					}
				}
			}
		}
		tags, digests = s.refsOfLocked(r.ID)
		if len(tags)+len(digests) > 0 {
			return out, nil
		}
		quiet = true
	} else if singleRepo(tags, digests) {
		if len(s.childrenLocked(r.ID)) > 0 {
			return nil, conflictf("conflict: unable to delete %s (cannot be forced) - image has dependent child images", shortID(r.ID))
		}
		if inUse(r.ID) && !opts.Force {
			return nil, conflictf("conflict: unable to delete %s (must be forced) - image is being used by a container", shortID(r.ID))
		}
		for _, ref := range append(tags, digests...) {
			_ = untag(ref)
		}
	}
	deleted, err := s.deleteLocked(r.ID, opts, inUse, quiet)
	out = append(out, deleted...)
	if err != nil {
		return out, err
	}
	return out, nil
}

// singleRepo reports whether an image has at most one tag and all its
// references are in one repository: then deleting it by ID is not
// ambiguous.
func singleRepo(tags, digests []reference.Reference) bool {
	if len(tags) > 1 {
		return false
	}
	name := ""
	for _, r := range append(tags, digests...) {
		if name != "" && r.Name() != name {
			return false
		}
		name = r.Name()
	}
	return true
}

// deleteLocked deletes image id (and, unless NoPrune, its untagged
// parents) and garbage-collects. quiet turns conflicts into keeping the
// image without error.
func (s *Store) deleteLocked(id digest.Digest, opts RemoveOptions, inUse func(digest.Digest) bool, quiet bool) ([]image.DeleteResponse, error) {
	var out []image.DeleteResponse
	for id != "" {
		r := s.images[id]
		if r == nil {
			break
		}
		tags, digests := s.refsOfLocked(id)
		switch {
		case len(s.childrenLocked(id)) > 0:
			if quiet {
				return out, nil
			}
			return out, conflictf("conflict: unable to delete %s (cannot be forced) - image has dependent child images", shortID(id))
		case inUse(id):
			if quiet {
				return out, nil
			}
			if !opts.Force {
				return out, conflictf("conflict: unable to delete %s (must be forced) - image is being used by a container", shortID(id))
			}
			// Forced: untag, keep the image for the containers using it.
			for _, ref := range append(tags, digests...) {
				delete(s.refs, ref.String())
				out = append(out, image.DeleteResponse{Untagged: ref.FamiliarString()})
			}
			return out, nil
		case len(tags)+len(digests) > 0:
			if !opts.Force {
				if quiet {
					return out, nil
				}
				return out, conflictf("conflict: unable to delete %s (must be forced) - image is referenced in multiple repositories", shortID(id))
			}
			for _, ref := range append(tags, digests...) {
				delete(s.refs, ref.String())
				out = append(out, image.DeleteResponse{Untagged: ref.FamiliarString()})
			}
		}
		if err := s.saveRefsLocked(); err != nil {
			return out, err
		}
		if err := s.removeRecordLocked(id); err != nil {
			return out, err
		}
		out = append(out, image.DeleteResponse{Deleted: id.String()})
		removed, err := s.gcLocked()
		for _, k := range removed {
			out = append(out, image.DeleteResponse{Deleted: k.String()})
		}
		if err != nil {
			return out, err
		}
		// Untagged parents without other children go too.
		parent := r.Parent
		id = ""
		if parent != "" && !opts.NoPrune {
			if ptags, pdigests := s.refsOfLocked(parent); len(ptags)+len(pdigests) == 0 {
				id, quiet = parent, true
			}
		}
	}
	return out, nil
}

func (s *Store) removeRecordLocked(id digest.Digest) error {
	if err := removeFile(s.recordPath(id)); err != nil {
		return fmt.Errorf("deleting image record %s: %w", id, err)
	}
	delete(s.images, id)
	delete(s.configs, id)
	return nil
}

// PruneOptions tunes Prune.
type PruneOptions struct {
	// All prunes every image no container uses, not only dangling ones.
	// The Docker API says the same with the filter dangling=false.
	All bool
	// Filters: dangling, until, label, label!.
	Filters Filters
	// InUse reports whether a container uses an image (by ID).
	InUse func(imageID string) bool
}

// Prune implements `docker image prune`: it deletes dangling (untagged)
// images, or with All every image no container uses, and reports what it
// deleted and the layer bytes reclaimed.
func (s *Store) Prune(ctx context.Context, opts PruneOptions) (image.PruneReport, error) {
	f := opts.Filters
	if err := f.check("dangling", "until", "label", "label!"); err != nil {
		return image.PruneReport{}, err
	}
	all := opts.All
	if dangling, set, err := f.bool("dangling"); err != nil {
		return image.PruneReport{}, err
	} else if set && !dangling {
		all = true
	}
	var until time.Time
	if vs := f["until"]; len(vs) > 0 {
		t, err := parseTimestamp(vs[0], time.Now())
		if err != nil {
			return image.PruneReport{}, err
		}
		until = t
	}
	inUse := func(id digest.Digest) bool { return opts.InUse != nil && opts.InUse(id.String()) }

	s.mu.Lock()
	defer s.mu.Unlock()
	sizes := map[digest.Digest]int64{}
	for _, r := range s.images {
		for _, l := range r.Layers {
			sizes[l.ChainID] = l.Size
		}
	}
	report := image.PruneReport{ImagesDeleted: []image.DeleteResponse{}}
	// Delete leaves first and go round again: deleting a child can make
	// its parent a candidate.
	for {
		var candidates []digest.Digest
		for id, r := range s.images {
			tags, _ := s.refsOfLocked(id)
			if (!all && len(tags) > 0) || inUse(id) || len(s.childrenLocked(id)) > 0 {
				continue
			}
			if !until.IsZero() && !r.Created.Before(until) {
				continue
			}
			var labels map[string]string
			if cfg, err := s.configLocked(id); err == nil {
				labels = cfg.Config.Labels
			}
			if !matchLabels(labels, f["label"]) {
				continue
			}
			if len(f["label!"]) > 0 && matchAnyLabel(labels, f["label!"]) {
				continue
			}
			candidates = append(candidates, id)
		}
		if len(candidates) == 0 {
			break
		}
		sort.Slice(candidates, func(i, j int) bool { return candidates[i] < candidates[j] })
		for _, id := range candidates {
			deleted, err := s.deleteLocked(id, RemoveOptions{Force: true, NoPrune: true}, inUse, false)
			report.ImagesDeleted = append(report.ImagesDeleted, deleted...)
			for _, d := range deleted {
				if k := digest.Digest(d.Deleted); k != "" {
					report.SpaceReclaimed += uint64(sizes[k])
				}
			}
			if err != nil {
				return report, err
			}
		}
	}
	// Also what failed operations left behind.
	if _, err := s.gcLocked(); err != nil {
		return report, err
	}
	return report, nil
}

// matchAnyLabel reports whether labels satisfy any "key" / "key=value".
func matchAnyLabel(labels map[string]string, want []string) bool {
	for _, w := range want {
		if matchLabels(labels, []string{w}) {
			return true
		}
	}
	return false
}
