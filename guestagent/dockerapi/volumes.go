package dockerapi

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"strconv"

	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/volume"

	"github.com/berthvm/berth/guestagent/engine"
)

// volumeUsager is the optional ability of a volume store to report sizes
// and reference counts (UsageData) for `docker system df`.
type volumeUsager interface {
	Usage(ctx context.Context) ([]volume.Volume, error)
}

func (s *Server) volumeRoutes(m *http.ServeMux) {
	v := func(pattern string, h func(http.ResponseWriter, *http.Request, engine.Volumes)) {
		m.HandleFunc(pattern, s.withVolumes(h))
	}
	v("GET /volumes", s.volumeList)
	v("POST /volumes/create", s.volumeCreate)
	v("POST /volumes/prune", s.volumePrune)
	v("GET /volumes/{name}", s.volumeInspect)
	v("DELETE /volumes/{name}", s.volumeRemove)
	m.HandleFunc("PUT /volumes/{name}", s.notImplemented("updating cluster volumes"))
}

func (s *Server) withVolumes(h func(http.ResponseWriter, *http.Request, engine.Volumes)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v := s.cfg.Volumes
		if v == nil {
			s.writeError(w, r, notImplementedf("berth's volume store is not running: volumes are not supported here"))
			return
		}
		h(w, r, v)
	}
}

// volumeEvent publishes a volume event as dockerd does: the name is the
// actor, the driver an attribute.
func (s *Server) volumeEvent(action events.Action, name string, attrs map[string]string) {
	if attrs == nil {
		attrs = map[string]string{}
	}
	s.events.Publish(events.Message{Type: events.VolumeEventType, Action: action, Actor: events.Actor{ID: name, Attributes: attrs}})
}

// validVolumeName is the local driver's rule for names.
var validVolumeName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

func (s *Server) volumeList(w http.ResponseWriter, r *http.Request, v engine.Volumes) {
	q, err := parseQuery(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	f, err := q.filters()
	if err == nil {
		err = checkFilters(f, "dangling", "driver", "label", "name")
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	list, err := v.List(r.Context(), f)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if list == nil {
		list = []volume.Volume{}
	}
	writeJSON(w, http.StatusOK, volume.ListResponse{Volumes: list, Warnings: []string{}})
}

func (s *Server) volumeCreate(w http.ResponseWriter, r *http.Request, v engine.Volumes) {
	var req volume.CreateRequest
	if err := decodeJSON(r.Body, &req, false); err != nil {
		s.writeError(w, r, err)
		return
	}
	if req.Name != "" && !validVolumeName.MatchString(req.Name) {
		if len(req.Name) < 2 {
			s.writeError(w, r, invalidf("volume name is too short, names should be at least two alphanumeric characters"))
		} else {
			s.writeError(w, r, invalidf("%q includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path", req.Name))
		}
		return
	}
	if req.ClusterVolumeSpec != nil {
		s.writeError(w, r, notImplementedf("cluster volumes are not supported by berth"))
		return
	}
	vol, err := v.Create(r.Context(), req)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.volumeEvent(events.ActionCreate, vol.Name, map[string]string{"driver": vol.Driver})
	writeJSON(w, http.StatusCreated, vol)
}

func (s *Server) volumeInspect(w http.ResponseWriter, r *http.Request, v engine.Volumes) {
	name := r.PathValue("name")
	vol, err := v.Inspect(r.Context(), name)
	if err != nil {
		s.writeError(w, r, noSuch("volume", name, err))
		return
	}
	writeJSON(w, http.StatusOK, vol)
}

// volumeRemove serves DELETE /volumes/{name}; with force a missing
// volume is no error, as in dockerd.
func (s *Server) volumeRemove(w http.ResponseWriter, r *http.Request, v engine.Volumes) {
	name := r.PathValue("name")
	q, err := parseQuery(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	force := q.bool("force")
	ctx := r.Context()
	attrs := map[string]string{}
	if vol, err := v.Inspect(ctx, name); err == nil {
		attrs["driver"] = vol.Driver
	}
	if err := v.Remove(ctx, name, force); err != nil {
		if force && errors.Is(err, engine.ErrNotFound) {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		s.writeError(w, r, noSuch("volume", name, err))
		return
	}
	s.volumeEvent(events.ActionDestroy, name, attrs)
	w.WriteHeader(http.StatusNoContent)
}

// volumePrune serves POST /volumes/prune: anonymous volumes only unless
// all=true (API 1.42 and later).
func (s *Server) volumePrune(w http.ResponseWriter, r *http.Request, v engine.Volumes) {
	q, err := parseQuery(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	f, err := q.filters()
	if err == nil {
		allowed := []string{"label", "label!"}
		if !before(r, "1.42") {
			allowed = append(allowed, "all")
		}
		err = checkFilters(f, allowed...)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	rep, err := v.Prune(r.Context(), f)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	for _, name := range rep.VolumesDeleted {
		s.volumeEvent(events.ActionDestroy, name, nil)
	}
	s.volumeEvent(events.ActionPrune, "", map[string]string{"reclaimed": strconv.FormatUint(rep.SpaceReclaimed, 10)})
	if rep.VolumesDeleted == nil {
		rep.VolumesDeleted = []string{}
	}
	writeJSON(w, http.StatusOK, rep)
}
