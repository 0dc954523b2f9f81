package engine

import (
	"context"
	"io"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/api/types/volume"
)

// Containers is the container side of the engine as the API server calls
// it. Every method that names a container takes an ID, a unique ID
// prefix, or a name (with or without the leading "/"); an unknown one is
// ErrNotFound, an ambiguous prefix ErrInvalid. Errors carry the kinds of
// errors.go so the API maps them to status codes in one place.
type Containers interface {
	// List returns `docker ps` data.
	List(ctx context.Context, opts ListOptions) ([]container.Summary, error)
	// Counts returns the number of containers by state.
	Counts(ctx context.Context) Counts
	// ImageInUse reports whether a container uses the image with this ID
	// ("sha256:..."); images.Store's InUse callbacks call it.
	ImageInUse(imageID string) bool

	// Create makes a container from an image that is already in the
	// store (the client pulls first on a 404). Name "" picks a random
	// name; a taken name is ErrConflict.
	Create(ctx context.Context, opts CreateOptions) (container.CreateResponse, error)
	// Inspect returns `docker inspect` data; size fills SizeRw/SizeRootFs.
	Inspect(ctx context.Context, name string, size bool) (container.InspectResponse, error)
	// Start starts a created or stopped container. Starting a running
	// one is ErrNotModified; a paused one, ErrConflict.
	Start(ctx context.Context, name string) error
	// Stop sends the stop signal (opts.Signal, else the container's
	// StopSignal, else SIGTERM), waits up to the timeout (opts.Timeout,
	// else the container's StopTimeout, else 10 s; -1 waits forever),
	// then kills. A stopped container is ErrNotModified. A stop by the
	// user disables the restart policy until the next start.
	Stop(ctx context.Context, name string, opts StopOptions) error
	// Restart stops (if running) and starts.
	Restart(ctx context.Context, name string, opts StopOptions) error
	// Kill sends a signal ("" is SIGKILL; names with or without "SIG",
	// or numbers). A container that is not running is ErrConflict.
	Kill(ctx context.Context, name, signal string) error
	Pause(ctx context.Context, name string) error
	Unpause(ctx context.Context, name string) error
	// Wait returns at once (after validating the name and condition)
	// and delivers one result when the condition holds: "not-running"
	// (default), "next-exit" or "removed".
	Wait(ctx context.Context, name string, cond container.WaitCondition) (<-chan container.WaitResponse, error)
	// Rename gives a container a new name; a taken one is ErrConflict.
	Rename(ctx context.Context, name, newName string) error
	// Remove deletes a container. A running one is ErrConflict unless
	// opts.Force (which kills it first).
	Remove(ctx context.Context, name string, opts RemoveOptions) error
	// Prune removes stopped containers matching the filters ("until",
	// "label", "label!").
	Prune(ctx context.Context, filters map[string][]string) (container.PruneReport, error)

	// Attach connects streams to the container's init process (or to
	// its next start) and returns when the output ends: the process
	// exits or ctx ends. Not when stdin closes: with StdinOnce the
	// client's end of input (io.EOF from Stdin) closes the process's
	// stdin (without a tty), and the attach goes on until the last
	// output is delivered. Any other Stdin error is a detach: Attach
	// returns it and the process's stdin stays open for the next attach.
	// With Logs, the logged output is replayed first. The API server
	// handles detach keys and stream framing.
	Attach(ctx context.Context, name string, opts AttachOptions) error
	// Resize sets the terminal size of a container with a tty.
	Resize(ctx context.Context, name string, height, width uint) error
	// Logs calls fn for each logged line matching opts, in order; with
	// Follow it keeps going until the container stops or ctx ends.
	Logs(ctx context.Context, name string, opts LogsOptions, fn func(LogEntry) error) error
	// Top lists the container's processes, as `docker top` (psArgs as
	// for ps, "-ef" when empty).
	Top(ctx context.Context, name, psArgs string) (container.TopResponse, error)
	// Stats samples resource use once. PreCPUStats is left empty: the
	// API server fills it from the previous sample when it streams.
	Stats(ctx context.Context, name string) (container.StatsResponse, error)

	// Changes lists the filesystem changes against the image (docker diff).
	Changes(ctx context.Context, name string) ([]container.FilesystemChange, error)
	// Export writes the container's filesystem as a tar.
	Export(ctx context.Context, name string, w io.Writer) error
	// StatPath describes a path in the container (HEAD .../archive).
	StatPath(ctx context.Context, name, path string) (container.PathStat, error)
	// CopyFrom writes a tar of path (GET .../archive); the stat of path
	// is returned before anything is written, through stat.
	CopyFrom(ctx context.Context, name, path string, stat func(container.PathStat), w io.Writer) error
	// CopyTo extracts a tar into the directory path (PUT .../archive).
	CopyTo(ctx context.Context, name, path string, r io.Reader, opts CopyToOptions) error
	// Commit makes an image of the container; it returns the image ID.
	Commit(ctx context.Context, name string, opts CommitOptions) (string, error)

	// ExecCreate prepares a process in a running container.
	ExecCreate(ctx context.Context, name string, req container.ExecCreateRequest) (string, error)
	// ExecStart runs it with the streams (Detach: returns once started)
	// and returns when it ends. io.EOF from Stdin closes the process's
	// stdin (without a tty); any other Stdin error, or the end of ctx,
	// is the client detaching: ExecStart returns, and the process runs
	// on with its stdin open.
	ExecStart(ctx context.Context, execID string, opts ExecStartOptions) error
	ExecResize(ctx context.Context, execID string, height, width uint) error
	ExecInspect(ctx context.Context, execID string) (container.ExecInspectResponse, error)
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

// CreateOptions is a decoded POST /containers/create.
type CreateOptions struct {
	Name       string
	Config     *container.Config
	HostConfig *container.HostConfig
	Networking *network.NetworkingConfig
	// Platform is the ?platform= query ("" for the engine's own).
	Platform string
}

// StopOptions tunes Stop and Restart.
type StopOptions struct {
	Signal  string
	Timeout *int // seconds
}

// RemoveOptions tunes Remove.
type RemoveOptions struct {
	Force   bool
	Volumes bool // also remove anonymous volumes
}

// AttachOptions are the streams of an attach. With a tty, Stderr is
// unused and Stdout carries the terminal.
type AttachOptions struct {
	Stdin     io.ReadCloser // nil: no stdin; io.EOF: end of input, other errors: detached
	Stdout    io.Writer     // nil: not attached
	Stderr    io.Writer     // nil: not attached
	Logs      bool          // replay logged output first
	Stream    bool          // attach to live output (false with Logs: replay only)
	StdinOnce bool          // the end of input closes the process's stdin
	// OnAttached is called once the live streams are connected, before
	// any output; docker run attaches, waits for this, then starts.
	OnAttached func()
}

// LogsOptions tunes Logs.
type LogsOptions struct {
	Stdout, Stderr bool
	Follow         bool
	Since, Until   time.Time // zero: unbounded
	Tail           int       // lines from the end; -1 all
}

// LogEntry is one logged line (with its newline, if it had one).
type LogEntry struct {
	Stream string // "stdout" or "stderr"
	Time   time.Time
	Line   []byte
}

// CopyToOptions tunes CopyTo.
type CopyToOptions struct {
	NoOverwriteDirNonDir bool
	CopyUIDGID           bool
}

// CommitOptions is a POST /commit.
type CommitOptions struct {
	Reference       string // repo[:tag], may be empty
	Author, Comment string
	Changes         []string // Dockerfile instructions (--change)
	Pause           bool
	Config          *container.Config // overrides, merged over the container's
}

// ExecStartOptions are the streams of an exec start.
type ExecStartOptions struct {
	Detach      bool
	Tty         bool
	ConsoleSize *[2]uint // height, width
	Stdin       io.ReadCloser
	Stdout      io.Writer
	Stderr      io.Writer
	OnStarted   func() // called once the process runs, before output
}

// Volumes is the engine's named volume store.
type Volumes interface {
	// Create makes a volume ("" name: a random one); creating an
	// existing name with the same driver returns it.
	Create(ctx context.Context, req volume.CreateRequest) (volume.Volume, error)
	List(ctx context.Context, filters map[string][]string) ([]volume.Volume, error)
	Inspect(ctx context.Context, name string) (volume.Volume, error)
	// Remove deletes a volume; one in use by a container is ErrConflict
	// unless force.
	Remove(ctx context.Context, name string, force bool) error
	// Prune removes unused volumes (anonymous ones only unless the
	// filter all=true), with "label" filters.
	Prune(ctx context.Context, filters map[string][]string) (volume.PruneReport, error)
}
