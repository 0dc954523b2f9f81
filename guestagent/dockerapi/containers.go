package dockerapi

import (
	"net/http"

	"github.com/moby/moby/api/types/container"

	"github.com/berthvm/berth/guestagent/engine"
)

func (s *Server) containersNotImplemented(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Containers == nil {
		s.writeError(w, r, notImplementedf("berth's container engine is not running: containers are not available"))
		return
	}
	s.writeError(w, r, notImplementedf("%s %s is not implemented by berth yet", r.Method, r.URL.Path))
}

// containerList serves GET /containers/json (docker ps).
func (s *Server) containerList(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Containers == nil {
		s.containersNotImplemented(w, r)
		return
	}
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
	limit, err := q.int("limit", -1)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	list, err := s.cfg.Containers.List(r.Context(), engine.ListOptions{All: q.bool("all"), Limit: limit, Size: q.bool("size"), Filters: f})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if list == nil {
		list = []container.Summary{}
	}
	writeJSON(w, http.StatusOK, list)
}
