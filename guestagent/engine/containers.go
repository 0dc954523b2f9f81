package engine

import (
	"context"

	"github.com/moby/moby/api/types/container"
)

// Containers is the container side of the engine, as far as the API
// server calls it today: enough for `docker ps`, `docker info`, `docker
// system df` and for keeping images that containers use. Further routes
// (create, start, attach, exec...) will find their backends through
// optional interfaces, so this one stays small enough to fake.
type Containers interface {
	// List returns `docker ps` data.
	List(ctx context.Context, opts ListOptions) ([]container.Summary, error)
	// Counts returns the number of containers by state.
	Counts(ctx context.Context) Counts
	// ImageInUse reports whether a container uses the image with this ID
	// ("sha256:..."); images.Store's InUse callbacks call it.
	ImageInUse(imageID string) bool
}

// ListOptions tunes Containers.List.
type ListOptions struct {
	All     bool
	Limit   int
	Size    bool
	Filters map[string][]string
}

// Counts are container counts by state, for `docker info`.
type Counts struct {
	Total, Running, Paused, Stopped int
}
