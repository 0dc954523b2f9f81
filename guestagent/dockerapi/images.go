package dockerapi

import (
	"context"
	"net/http"
	"strconv"
	"strings"

	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/image"

	"github.com/berthvm/berth/guestagent/engine"
	"github.com/berthvm/berth/images"
)

// inUse is the InUse callback of the image store: images that containers
// use are never deleted.
func (s *Server) inUse(id string) bool {
	return s.cfg.Containers != nil && s.cfg.Containers.ImageInUse(id)
}

// imageEvent publishes an image event; name is the reference acted on.
func (s *Server) imageEvent(action events.Action, id, name string) {
	attrs := map[string]string{}
	if name != "" {
		attrs["name"] = name
	}
	s.events.Publish(events.Message{Type: events.ImageEventType, Action: action, Actor: events.Actor{ID: id, Attributes: attrs}})
}

// splitImagePath splits "{name}/{action}" where name may hold slashes
// ("localhost:5000/a/b:tag/json").
func splitImagePath(rest string) (name, action string) {
	i := strings.LastIndex(rest, "/")
	if i < 0 {
		return rest, ""
	}
	return rest[:i], rest[i+1:]
}

// imageGet serves GET /images/{name}/json|history|get.
func (s *Server) imageGet(w http.ResponseWriter, r *http.Request) {
	name, action := splitImagePath(r.PathValue("rest"))
	if name == "" {
		s.writeError(w, r, notFoundf("page not found"))
		return
	}
	switch action {
	case "json":
		s.imageInspect(w, r, name)
	case "history":
		s.imageHistory(w, r, name)
	case "get":
		s.imageSave(w, r, []string{name})
	default:
		s.writeError(w, r, notFoundf("page not found"))
	}
}

// imagePost serves POST /images/{name}/tag|push.
func (s *Server) imagePost(w http.ResponseWriter, r *http.Request) {
	name, action := splitImagePath(r.PathValue("rest"))
	if name == "" {
		s.writeError(w, r, notFoundf("page not found"))
		return
	}
	switch action {
	case "tag":
		s.imageTag(w, r, name)
	case "push":
		s.imagePush(w, r, name)
	default:
		s.writeError(w, r, notFoundf("page not found"))
	}
}

func (s *Server) imageList(w http.ResponseWriter, r *http.Request) {
	q, err := parseQuery(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	f, err := q.filters()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// API < 1.41 had a "filter" parameter for the reference.
	if legacy := q.get("filter"); legacy != "" {
		f["reference"] = append(f["reference"], legacy)
	}
	list, err := s.cfg.Images.List(r.Context(), images.ListOptions{All: q.bool("all"), Filters: f})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if list == nil {
		list = []image.Summary{}
	}
	for i := range list {
		if s.inUse(list[i].ID) {
			list[i].Containers = 1
		}
	}
	writeJSON(w, http.StatusOK, list)
}

func (s *Server) imageInspect(w http.ResponseWriter, r *http.Request, name string) {
	insp, err := s.cfg.Images.Inspect(r.Context(), name)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, insp)
}

func (s *Server) imageHistory(w http.ResponseWriter, r *http.Request, name string) {
	h, err := s.cfg.Images.History(r.Context(), name)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, h)
}

// pullRef joins fromImage and tag as the CLI splits them: the tag may be
// a digest.
func pullRef(from, tag string) (string, error) {
	from = strings.TrimSpace(from)
	if from == "" {
		return "", invalidf("no image name: fromImage is required")
	}
	switch {
	case tag == "":
		return from, nil
	case strings.Contains(tag, ":") && strings.HasPrefix(tag, "sha256:"):
		return from + "@" + tag, nil
	case strings.ContainsAny(tag, "/@: "):
		return "", invalidf("invalid tag %q", tag)
	}
	return from + ":" + tag, nil
}

// imagePull serves POST /images/create (docker pull).
func (s *Server) imagePull(w http.ResponseWriter, r *http.Request) {
	q, err := parseQuery(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if q.get("fromSrc") != "" {
		s.writeError(w, r, notImplementedf("docker import is not implemented by berth yet"))
		return
	}
	ref, err := pullRef(q.get("fromImage"), q.get("tag"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	plat, err := parsePlatform(q.get("platform"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	auth, err := images.DecodeRegistryAuth(r.Header.Get("X-Registry-Auth"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	st := s.newStream(w, r, "application/json")
	img, err := s.cfg.Images.Pull(r.Context(), ref, images.PullOptions{
		Auth:     images.Authenticator(auth),
		Platform: plat,
		Progress: st.progress,
	})
	if err == nil {
		name := ref
		if len(img.RepoTags) > 0 && !strings.Contains(ref, "@") {
			name = matchingTag(img.RepoTags, ref)
		}
		s.imageEvent(events.ActionPull, name, name)
	}
	st.finish(err)
}

// matchingTag picks the familiar tag pulled from the image's tags.
func matchingTag(tags []string, ref string) string {
	for _, t := range tags {
		if t == ref || strings.TrimPrefix(t, "docker.io/") == ref || strings.HasSuffix(ref, "/"+t) || t == ref+":latest" {
			return t
		}
	}
	return ref
}

// imagePush serves POST /images/{name}/push.
func (s *Server) imagePush(w http.ResponseWriter, r *http.Request, name string) {
	q, err := parseQuery(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ref := name
	if tag := q.get("tag"); tag != "" {
		if strings.ContainsAny(tag, "/@: ") {
			s.writeError(w, r, invalidf("invalid tag %q", tag))
			return
		}
		ref = name + ":" + tag
	}
	auth, err := images.DecodeRegistryAuth(r.Header.Get("X-Registry-Auth"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	st := s.newStream(w, r, "application/json")
	_, err = s.cfg.Images.Push(r.Context(), ref, images.PushOptions{Auth: images.Authenticator(auth), Progress: st.progress})
	if err == nil {
		s.imageEvent(events.ActionPush, ref, ref)
	}
	st.finish(err)
}

// imageTag serves POST /images/{name}/tag?repo=&tag=.
func (s *Server) imageTag(w http.ResponseWriter, r *http.Request, name string) {
	q, err := parseQuery(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	repo, tag := q.get("repo"), q.get("tag")
	if repo == "" {
		s.writeError(w, r, invalidf("repository name (repo parameter) is required"))
		return
	}
	target := repo
	if tag != "" {
		if strings.ContainsAny(tag, "/@: ") {
			s.writeError(w, r, invalidf("invalid tag format %q", tag))
			return
		}
		target = repo + ":" + tag
	}
	ctx := r.Context()
	img, err := s.cfg.Images.Resolve(ctx, name)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.cfg.Images.Tag(ctx, img.ID, target); err != nil {
		s.writeError(w, r, err)
		return
	}
	if tag == "" {
		target += ":latest"
	}
	s.imageEvent(events.ActionTag, img.ID, target)
	w.WriteHeader(http.StatusCreated)
}

// imageDelete serves DELETE /images/{name} (docker rmi).
func (s *Server) imageDelete(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("rest")
	q, err := parseQuery(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ctx := r.Context()
	img, err := s.cfg.Images.Resolve(ctx, name)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	force := q.bool("force")
	if force && isIDPrefix(name, img.ID) {
		// As dockerd: -f by ID cannot delete an image out from under a
		// running container. (By reference, -f untags it; the image stays
		// for the container.)
		if cid := s.runningUser(ctx, img.ID); cid != "" {
			s.writeError(w, r, conflictf("conflict: unable to delete %s (cannot be forced) - image is being used by running container %s", engine.ShortID(img.ID), engine.ShortID(cid)))
			return
		}
	}
	resp, err := s.cfg.Images.Remove(ctx, name, images.RemoveOptions{Force: force, NoPrune: q.bool("noprune"), InUse: s.inUse})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	for _, d := range resp {
		switch {
		case d.Untagged != "":
			s.imageEvent(events.ActionUnTag, img.ID, d.Untagged)
		case d.Deleted == img.ID:
			s.imageEvent(events.ActionDelete, img.ID, name)
		}
	}
	if resp == nil {
		resp = []image.DeleteResponse{}
	}
	writeJSON(w, http.StatusOK, resp)
}

// runningUser returns the ID of a running container of image id, or "".
func (s *Server) runningUser(ctx context.Context, id string) string {
	if s.cfg.Containers == nil || !s.cfg.Containers.ImageInUse(id) {
		return ""
	}
	list, err := s.cfg.Containers.List(ctx, engine.ListOptions{Filters: map[string][]string{"status": {"running"}}})
	if err != nil {
		return ""
	}
	for _, c := range list {
		if c.ImageID == id {
			return c.ID
		}
	}
	return ""
}

// isIDPrefix reports whether name names image id by its ID (or a prefix
// of it), not by a reference.
func isIDPrefix(name, id string) bool {
	return strings.HasPrefix(id, name) || strings.HasPrefix(strings.TrimPrefix(id, "sha256:"), name)
}

// imagePrune serves POST /images/prune.
func (s *Server) imagePrune(w http.ResponseWriter, r *http.Request) {
	q, err := parseQuery(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	f, err := q.filters()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	rep, err := s.cfg.Images.Prune(r.Context(), images.PruneOptions{Filters: f, InUse: s.inUse})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	for _, d := range rep.ImagesDeleted {
		if d.Untagged != "" {
			s.imageEvent(events.ActionUnTag, "", d.Untagged)
		}
	}
	s.events.Publish(events.Message{Type: events.ImageEventType, Action: events.ActionPrune,
		Actor: events.Actor{Attributes: map[string]string{"reclaimed": strconv.FormatUint(rep.SpaceReclaimed, 10)}}})
	if rep.ImagesDeleted == nil {
		rep.ImagesDeleted = []image.DeleteResponse{}
	}
	writeJSON(w, http.StatusOK, rep)
}

// imageSaveMany serves GET /images/get?names=...
func (s *Server) imageSaveMany(w http.ResponseWriter, r *http.Request) {
	q, err := parseQuery(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	names := q.all("names")
	if len(names) == 0 {
		s.writeError(w, r, invalidf("no images to save: give at least one names= parameter"))
		return
	}
	s.imageSave(w, r, names)
}

func (s *Server) imageSave(w http.ResponseWriter, r *http.Request, names []string) {
	ctx := r.Context()
	// Check every name first, so a typo is a 404 and not a cut-off tar.
	for _, n := range names {
		if _, err := s.cfg.Images.Resolve(ctx, n); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	st := s.newStream(w, r, "application/x-tar")
	err := s.cfg.Images.Save(ctx, names, st)
	if err == nil {
		for _, n := range names {
			s.imageEvent(events.ActionSave, n, n)
		}
	}
	st.finish(err)
}

// imageLoad serves POST /images/load (docker load).
func (s *Server) imageLoad(w http.ResponseWriter, r *http.Request) {
	q, err := parseQuery(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	st := s.newStream(w, r, "application/json")
	opts := images.LoadOptions{Progress: st.progress}
	if q.bool("quiet") {
		// Quiet drops the layer progress but keeps the "Loaded image"
		// lines, as dockerd does.
		opts.Progress = func(m jsonStreamMessage) {
			if m.Stream != "" || m.Error != nil {
				st.progress(m)
			}
		}
	}
	names, err := s.cfg.Images.Load(r.Context(), r.Body, opts)
	if err != nil {
		st.finish(err) // the store's error says "loading images: ..."
		return
	}
	for _, n := range names {
		s.imageEvent(events.ActionLoad, n, n)
	}
	st.finish(nil)
}
