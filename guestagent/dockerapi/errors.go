package dockerapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/moby/moby/api/types/common"

	"github.com/berthvm/berth/guestagent/engine"
)

// statusOf maps an error's kind to its HTTP status: the one place where
// that happens.
func statusOf(err error) int {
	switch {
	case err == nil:
		return http.StatusOK
	case errors.Is(err, engine.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, engine.ErrUnauthorized):
		return http.StatusUnauthorized
	case errors.Is(err, engine.ErrForbidden):
		return http.StatusForbidden
	case errors.Is(err, engine.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, engine.ErrConflict):
		return http.StatusConflict
	case errors.Is(err, engine.ErrNotModified):
		return http.StatusNotModified
	case errors.Is(err, engine.ErrNotImplemented):
		return http.StatusNotImplemented
	case errors.Is(err, engine.ErrUnavailable):
		return http.StatusServiceUnavailable
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		// The client went away or gave up; dockerd answers 500 too, but
		// nobody reads it.
		return http.StatusInternalServerError
	}
	return http.StatusInternalServerError
}

// Helpers that give API-level errors their kind.

func invalidf(format string, args ...any) error {
	return engine.WithKind(engine.ErrInvalid, fmt.Sprintf(format, args...))
}

func notFoundf(format string, args ...any) error {
	return engine.WithKind(engine.ErrNotFound, fmt.Sprintf(format, args...))
}

func notImplementedf(format string, args ...any) error {
	return engine.WithKind(engine.ErrNotImplemented, fmt.Sprintf(format, args...))
}

func conflictf(format string, args ...any) error {
	return engine.WithKind(engine.ErrConflict, fmt.Sprintf(format, args...))
}

func forbiddenf(format string, args ...any) error {
	return engine.WithKind(engine.ErrForbidden, fmt.Sprintf(format, args...))
}

// noSuch gives a bare not-found from a backend dockerd's wording ("No
// such container: web"); an error that already says more is kept.
func noSuch(what, name string, err error) error {
	if err != nil && errors.Is(err, engine.ErrNotFound) && err.Error() == engine.ErrNotFound.Error() {
		return notFoundf("No such %s: %s", what, name)
	}
	return err
}

// writeError sends err as dockerd does: {"message": ...} with the status of
// its kind. 304 has no body.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code := statusOf(err)
	if code >= 500 {
		s.log.Warn("docker api request failed", "method", r.Method, "path", r.URL.Path, "status", code, "err", err)
	} else {
		s.log.Debug("docker api request refused", "method", r.Method, "path", r.URL.Path, "status", code, "err", err)
	}
	if code == http.StatusNotModified {
		w.WriteHeader(code)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(common.ErrorResponse{Message: err.Error()})
}
