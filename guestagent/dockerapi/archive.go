package dockerapi

import (
	"encoding/base64"
	"encoding/json"
	"net/http"

	"github.com/moby/moby/api/types/container"

	"github.com/berthvm/berth/guestagent/engine"
)

// pathStatHeader carries a container.PathStat as base64 JSON on the
// archive endpoints (docker cp reads it).
const pathStatHeader = "X-Docker-Container-Path-Stat"

func setPathStat(h http.Header, st container.PathStat) {
	b, _ := json.Marshal(st)
	h.Set(pathStatHeader, base64.StdEncoding.EncodeToString(b))
}

// archivePath reads the required ?path=.
func archivePath(r *http.Request) (string, error) {
	q, err := parseQuery(r)
	if err != nil {
		return "", err
	}
	p := q.get("path")
	if p == "" {
		return "", invalidf("bad parameter: path cannot be empty")
	}
	return p, nil
}

// archiveStat serves HEAD /containers/{id}/archive.
func (s *Server) archiveStat(w http.ResponseWriter, r *http.Request, c engine.Containers) {
	id := r.PathValue("id")
	p, err := archivePath(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	st, err := c.StatPath(r.Context(), id, p)
	if err != nil {
		s.writeError(w, r, noSuch("container", id, err))
		return
	}
	setPathStat(w.Header(), st)
	w.WriteHeader(http.StatusOK)
}

// archiveGet serves GET /containers/{id}/archive: the stat header, then
// a tar of the path.
func (s *Server) archiveGet(w http.ResponseWriter, r *http.Request, c engine.Containers) {
	id := r.PathValue("id")
	p, err := archivePath(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	st := s.newStream(w, r, "application/x-tar")
	err = c.CopyFrom(r.Context(), id, p, func(ps container.PathStat) {
		st.mu.Lock()
		defer st.mu.Unlock()
		if !st.started {
			setPathStat(w.Header(), ps)
		}
	}, st)
	st.finish(noSuch("container", id, err))
}

// archivePut serves PUT /containers/{id}/archive: extract the body's tar
// into the directory path.
func (s *Server) archivePut(w http.ResponseWriter, r *http.Request, c engine.Containers) {
	id := r.PathValue("id")
	p, err := archivePath(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	q, _ := parseQuery(r) // parsed fine above
	err = c.CopyTo(r.Context(), id, p, r.Body, engine.CopyToOptions{
		NoOverwriteDirNonDir: q.bool("noOverwriteDirNonDir"),
		CopyUIDGID:           q.bool("copyUIDGID"),
	})
	if err != nil {
		s.writeError(w, r, noSuch("container", id, err))
		return
	}
	w.WriteHeader(http.StatusOK)
}
