// Package shim runs containers. Each container has its own shim process
// ("berth-guestagent shim ...") that creates the container with runc's
// libcontainer, stays its parent (a child subreaper), records its exit
// status, writes its output to the json-file log, and serves attach,
// exec, resize, signals, pause and stats on a unix socket in the
// container's state directory. Containers and their shims outlive the
// engine: after an engine restart, Manager.Restore reconnects to them.
//
// The package knows nothing of images, the Docker API or networks: the
// engine gives it a Spec (layer dirs the shim mounts as an overlay) and a
// network namespace. It does not restart containers or keep stopped ones:
// as moby deletes the containerd task when a container exits, the engine
// should Delete after Wait and Create again (same StateDir) to restart.
//
// The binary that serves Manager must call HandleReexec from an init
// function: it is re-executed as "shim --state-dir DIR" and as
// libcontainer's "init". Docker's default seccomp profile is applied only
// in builds with the "seccomp" tag (cgo, libseccomp); without it the
// container runs without seccomp and Warnings says so, as it says which
// limits a cgroup v1 host could not apply.
//
// A state directory holds spec.json (the Spec), shim.sock (the RPC),
// shim.json (pids, warnings), exit.json (the Exit, written atomically),
// shim.log (the shim's own log) and runc/ (libcontainer's state).
package shim

import (
	"context"
	"io"
	"time"
)

// Spec is everything needed to create one container.
type Spec struct {
	ID       string
	StateDir string // the container's directory: shim socket, pid, exit status, config.json

	// Root filesystem: an overlay of Lowers (top-most first) with Upper
	// and Work, mounted by the shim at Rootfs. Lowers may be relative to
	// LowerBase (the mount option length limit).
	Rootfs    string
	LowerBase string
	Lowers    []string
	Upper     string
	Work      string
	Readonly  bool

	Process  Process
	Hostname string
	Mounts   []Mount // binds, tmpfs and volumes, in order

	Privileged        bool
	CapAdd, CapDrop   []string // Docker spelling: NET_ADMIN, ALL
	NoNewPrivileges   bool
	SeccompUnconfined bool
	UserNS            bool // remap root to an unprivileged range; the shim gives it the upper dir and makes its mount points

	Resources Resources

	// NetNS is the path of the network namespace to join; "" gives the
	// container a new one with only lo; "host" shares the guest's.
	NetNS string
	// Hosts and ResolvConf are bind-mounted as /etc/hosts and
	// /etc/resolv.conf when set.
	Hosts, ResolvConf, HostnameFile string

	LogPath   string // json-file log; "" disables logging
	OpenStdin bool   // keep stdin open for attach (-i)
	StdinOnce bool
}

// Process is a process to run in a container.
type Process struct {
	Args           []string
	Env            []string
	Cwd            string
	UID            uint32
	GID            uint32
	AdditionalGIDs []uint32
	Tty            bool
	Width, Height  uint16 // initial terminal size, with Tty
}

// Mount is one mount in a container.
type Mount struct {
	Source      string
	Destination string
	Type        string   // bind, tmpfs
	Options     []string // ro, rbind, rprivate, size=..., mode=...
}

// Resources are cgroup v2 limits. Zero means unlimited.
type Resources struct {
	MemoryBytes int64
	MemorySwap  int64 // memory+swap, as Docker's --memory-swap; -1 unlimited swap
	CPUQuota    int64 // microseconds per CPUPeriod
	CPUPeriod   uint64
	CPUShares   uint64 // Docker's 2..262144, mapped to cpu.weight
	PidsLimit   int64
}

// Exit is how a container or exec process ended.
type Exit struct {
	Code       int
	Signal     int // the signal that killed it, or 0
	OOMKilled  bool
	FinishedAt time.Time
	Error      string // the runtime could not start or run it
}

// Stats is one sample of a container's resource use, from cgroup v2.
type Stats struct {
	Read        time.Time
	CPUUsageNs  uint64
	CPUUserNs   uint64
	CPUSystemNs uint64
	SystemCPUNs uint64 // host CPU time, for Docker's percentage
	OnlineCPUs  uint32
	MemoryUsage uint64
	MemoryLimit uint64
	MemoryStats map[string]uint64
	PidsCurrent uint64
	PidsLimit   uint64
	BlkioRead   uint64
	BlkioWrite  uint64
}

// Streams are a process's standard streams as the attaching side sees
// them. With a tty, Stderr is nil and Stdout carries the terminal.
type Streams struct {
	Stdin  io.ReadCloser // nil: nothing to send
	Stdout io.Writer
	Stderr io.Writer
	// OnAttached, when set, is called once the shim has registered the
	// attach and before any output, so a caller can attach, wait for
	// this, then Start without losing the first output (docker run).
	OnAttached func()
}

// Manager creates containers and finds them again.
type Manager interface {
	// Create starts the container's shim and creates the container (its
	// namespaces and mounts, its process not yet running).
	Create(ctx context.Context, spec Spec) (Container, error)
	// Restore reconnects to the shims of containers that survived an
	// engine restart, by state directory.
	Restore(ctx context.Context, stateDir string) (Container, error)
}

// Container is one container, through its shim.
type Container interface {
	ID() string
	Start(ctx context.Context) error
	Pid() int // the init process's pid in the guest, 0 when not running
	Signal(ctx context.Context, sig int) error
	// Wait returns when the init process has exited.
	Wait(ctx context.Context) (Exit, error)
	Pause(ctx context.Context) error
	Resume(ctx context.Context) error
	Attach(ctx context.Context, s Streams) error // returns when the streams end
	Resize(ctx context.Context, width, height uint16) error
	Exec(ctx context.Context, id string, p Process, s Streams) (ExecProcess, error)
	Stats(ctx context.Context) (Stats, error)
	Top(ctx context.Context) ([]int, error) // pids in the container
	// Delete removes the container after it stopped, and ends its shim.
	Delete(ctx context.Context) error
}

// ExecProcess is a process started in a running container.
type ExecProcess interface {
	Pid() int
	Resize(ctx context.Context, width, height uint16) error
	Signal(ctx context.Context, sig int) error
	Wait(ctx context.Context) (Exit, error)
}
