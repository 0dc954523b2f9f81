package engine

import (
	"errors"

	"github.com/berthvm/berth/images"
)

// Error kinds. Backend errors wrap one of them so that the API server maps
// them to a status code in one place. The first four are the image store's
// own kinds, so an images.Store error needs no translation.
var (
	ErrNotFound       = images.ErrNotFound     // 404
	ErrConflict       = images.ErrConflict     // 409
	ErrInvalid        = images.ErrInvalid      // 400
	ErrUnauthorized   = images.ErrUnauthorized // 401
	ErrNotImplemented = errors.New("not implemented")
	ErrNotModified    = errors.New("not modified") // 304: start of a running container, ...
	ErrForbidden      = errors.New("forbidden")    // 403
	ErrUnavailable    = errors.New("unavailable")  // 503
)

// kindError gives a message of its own a kind, for errors.Is.
type kindError struct {
	kind error
	msg  string
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() error { return e.kind }

// WithKind returns an error whose text is msg and which wraps kind.
func WithKind(kind error, msg string) error { return &kindError{kind: kind, msg: msg} }
