package dockerapi

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/api/types/volume"

	"github.com/berthvm/berth/guestagent/engine"
)

// fakeEngine is a small in-memory engine.Containers and engine.Volumes.
// A container "runs" a program picked by its first Cmd word, in a
// goroutine:
//
//	echo ARGS...   prints ARGS and exits 0
//	cat            copies stdin to stdout; exits 0 at EOF
//	lines N        prints "line 1".."line N" and exits 0
//	fail N         prints to stderr and exits N
//	sleep          runs until a signal (exit 128+signal)
//
// Anything else fails to start, as a missing executable does.
type fakeEngine struct {
	mu    sync.Mutex
	ctrs  map[string]*fakeCtr // by ID
	execs map[string]*fakeExec
	seq   int

	// What the API passed, for the tests to check.
	commits []engine.CommitOptions
	creates []engine.CreateOptions
	resizes []string
	topArgs []string
	stops   []engine.StopOptions
}

var _ engine.Containers = (*fakeEngine)(nil)

// fakeCalls is a copy of what the API passed to the fake.
type fakeCalls struct {
	commits []engine.CommitOptions
	creates []engine.CreateOptions
	resizes []string
	topArgs []string
	stops   []engine.StopOptions
}

func (e *fakeEngine) calls() fakeCalls {
	e.mu.Lock()
	defer e.mu.Unlock()
	return fakeCalls{
		commits: append([]engine.CommitOptions(nil), e.commits...),
		creates: append([]engine.CreateOptions(nil), e.creates...),
		resizes: append([]string(nil), e.resizes...),
		topArgs: append([]string(nil), e.topArgs...),
		stops:   append([]engine.StopOptions(nil), e.stops...),
	}
}

func newFakeEngine() *fakeEngine {
	return &fakeEngine{ctrs: map[string]*fakeCtr{}, execs: map[string]*fakeExec{}}
}

type fakeFile struct {
	mode os.FileMode
	data []byte
	time time.Time
}

type fakeOut struct {
	stdout, stderr io.Writer
}

type fakeCtr struct {
	id, name string
	created  time.Time
	cfg      *container.Config
	host     *container.HostConfig
	state    container.ContainerState
	exitCode int

	logs     []engine.LogEntry
	logsMore chan struct{} // closed (and replaced) on new output or exit
	outs     map[*fakeOut]struct{}

	stdinR   *io.PipeReader
	stdinW   *io.PipeWriter
	kill     chan int
	exited   chan struct{} // closed when the current run ends
	nextExit chan struct{} // closed at the next exit, then replaced
	removed  chan struct{}

	files   map[string]*fakeFile
	changes []container.FilesystemChange
	statsN  uint64
}

type fakeExec struct {
	id       string
	ctr      *fakeCtr
	req      container.ExecCreateRequest
	started  bool
	running  bool
	exitCode *int
	kill     chan int
}

func (e *fakeEngine) newID() string {
	e.seq++
	sum := sha256.Sum256([]byte(fmt.Sprint("fake", e.seq)))
	return hex.EncodeToString(sum[:])
}

// find resolves a name, ID or unique ID prefix; e.mu is held.
func (e *fakeEngine) find(ref string) (*fakeCtr, error) {
	ref = strings.TrimPrefix(ref, "/")
	var hits []*fakeCtr
	for _, c := range e.ctrs {
		if c.id == ref || c.name == ref {
			return c, nil
		}
		if ref != "" && strings.HasPrefix(c.id, ref) {
			hits = append(hits, c)
		}
	}
	switch len(hits) {
	case 1:
		return hits[0], nil
	case 0:
		return nil, engine.ErrNotFound // the API words it
	}
	return nil, engine.WithKind(engine.ErrInvalid, "multiple containers match "+ref)
}

func (e *fakeEngine) get(ref string) (*fakeCtr, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.find(ref)
}

func (e *fakeEngine) List(ctx context.Context, opts engine.ListOptions) ([]container.Summary, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []container.Summary
	for _, c := range e.ctrs {
		if !opts.All && c.state != container.StateRunning && c.state != container.StatePaused {
			continue
		}
		imageID := "sha256:" + strings.Repeat("ab", 32)
		if strings.HasPrefix(c.cfg.Image, "sha256:") {
			imageID = c.cfg.Image
		}
		s := container.Summary{
			ID: c.id, Names: []string{"/" + c.name}, Image: c.cfg.Image, ImageID: imageID,
			Command: strings.Join(c.cfg.Cmd, " "), Created: c.created.Unix(), Labels: c.cfg.Labels,
			State: c.state, Status: string(c.state),
			NetworkSettings: &container.NetworkSettingsSummary{Networks: c.networks()},
		}
		if opts.Size {
			for _, f := range c.files {
				s.SizeRw += int64(len(f.data))
			}
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Created > out[j].Created || out[i].Created == out[j].Created && out[i].ID < out[j].ID
	})
	return out, nil
}

func (c *fakeCtr) networks() map[string]*network.EndpointSettings {
	if c.state != container.StateRunning && c.state != container.StatePaused {
		return map[string]*network.EndpointSettings{}
	}
	return map[string]*network.EndpointSettings{"bridge": {
		EndpointID: "ep-" + c.id[:12], IPAddress: netip.MustParseAddr("172.17.0.2"), IPPrefixLen: 16,
		Gateway: netip.MustParseAddr("172.17.0.1"), MacAddress: network.HardwareAddr{2, 0x42, 0xac, 0x11, 0, 2},
	}}
}

func (e *fakeEngine) Counts(ctx context.Context) engine.Counts {
	e.mu.Lock()
	defer e.mu.Unlock()
	var n engine.Counts
	for _, c := range e.ctrs {
		n.Total++
		switch c.state {
		case container.StateRunning:
			n.Running++
		case container.StatePaused:
			n.Paused++
		default:
			n.Stopped++
		}
	}
	return n
}

func (e *fakeEngine) ImageInUse(id string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, c := range e.ctrs {
		if c.cfg.Image == id {
			return true
		}
	}
	return false
}

func (e *fakeEngine) Create(ctx context.Context, opts engine.CreateOptions) (container.CreateResponse, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.creates = append(e.creates, opts)
	if opts.Config.Image == "" {
		return container.CreateResponse{}, engine.WithKind(engine.ErrInvalid, "no image given")
	}
	if opts.Config.Image == "missing:1" {
		return container.CreateResponse{}, engine.WithKind(engine.ErrNotFound, "No such image: missing:1")
	}
	id := e.newID()
	name := opts.Name
	if name == "" {
		name = "fake_" + id[:6]
	}
	for _, c := range e.ctrs {
		if c.name == name {
			return container.CreateResponse{}, engine.WithKind(engine.ErrConflict, fmt.Sprintf("Conflict. The container name \"/%s\" is already in use by container %q.", name, c.id))
		}
	}
	c := &fakeCtr{
		id: id, name: name, created: time.Now(), cfg: opts.Config, host: opts.HostConfig, state: container.StateCreated,
		logsMore: make(chan struct{}), outs: map[*fakeOut]struct{}{}, nextExit: make(chan struct{}), removed: make(chan struct{}),
		files: map[string]*fakeFile{"/": {mode: os.ModeDir | 0o755}, "/etc": {mode: os.ModeDir | 0o755},
			"/etc/hostname": {mode: 0o644, data: []byte(name + "\n")}},
	}
	c.stdinR, c.stdinW = io.Pipe()
	e.ctrs[id] = c
	return container.CreateResponse{ID: id, Warnings: nil}, nil
}

func (e *fakeEngine) Inspect(ctx context.Context, name string, size bool) (container.InspectResponse, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, err := e.find(name)
	if err != nil {
		return container.InspectResponse{}, err
	}
	running := c.state == container.StateRunning || c.state == container.StatePaused
	insp := container.InspectResponse{
		ID: c.id, Name: "/" + c.name, Created: c.created.Format(time.RFC3339Nano), Image: "sha256:" + strings.Repeat("ab", 32),
		State:  &container.State{Status: c.state, Running: running, Paused: c.state == container.StatePaused, ExitCode: c.exitCode},
		Config: c.cfg, HostConfig: c.host,
		NetworkSettings: &container.NetworkSettings{Networks: c.networks()},
	}
	if len(c.cfg.Cmd) > 0 {
		insp.Path, insp.Args = c.cfg.Cmd[0], c.cfg.Cmd[1:]
	}
	if size {
		n := int64(0)
		insp.SizeRw = &n
	}
	return insp, nil
}

// fakeProgram runs args with the streams; out writes to a stream
// ("stdout", "stderr"); kill delivers signals.
func fakeProgram(args []string) (func(stdin io.Reader, out func(string, []byte), kill <-chan int) int, error) {
	if len(args) == 0 {
		return nil, errors.New("no command")
	}
	signalled := func(kill <-chan int) int { return 128 + <-kill }
	switch args[0] {
	case "echo":
		return func(_ io.Reader, out func(string, []byte), _ <-chan int) int {
			out("stdout", []byte(strings.Join(args[1:], " ")+"\n"))
			return 0
		}, nil
	case "lines":
		n, _ := strconv.Atoi(args[len(args)-1])
		return func(_ io.Reader, out func(string, []byte), _ <-chan int) int {
			for i := 1; i <= n; i++ {
				out("stdout", fmt.Appendf(nil, "line %d\n", i))
			}
			return 0
		}, nil
	case "fail":
		n, _ := strconv.Atoi(args[len(args)-1])
		return func(_ io.Reader, out func(string, []byte), _ <-chan int) int {
			out("stderr", fmt.Appendf(nil, "failing with %d\n", n))
			return n
		}, nil
	case "sleep":
		return func(_ io.Reader, _ func(string, []byte), kill <-chan int) int { return signalled(kill) }, nil
	case "cat":
		return func(stdin io.Reader, out func(string, []byte), kill <-chan int) int {
			done := make(chan error, 1)
			go func() {
				buf := make([]byte, 4096)
				for {
					n, err := stdin.Read(buf)
					if n > 0 {
						out("stdout", bytes.Clone(buf[:n]))
					}
					if err != nil {
						done <- err
						return
					}
				}
			}()
			select {
			case err := <-done:
				if errors.Is(err, io.EOF) {
					return 0
				}
				// stdin was not closed (a detach): a real cat keeps
				// waiting for input.
				return signalled(kill)
			case sig := <-kill:
				return 128 + sig
			}
		}, nil
	}
	return nil, fmt.Errorf("exec: %q: executable file not found in $PATH", args[0])
}

// emit records output and sends it to the attached clients.
func (e *fakeEngine) emit(c *fakeCtr, stream string, p []byte) {
	e.mu.Lock()
	c.logs = append(c.logs, engine.LogEntry{Stream: stream, Time: time.Now(), Line: p})
	close(c.logsMore)
	c.logsMore = make(chan struct{})
	var ws []io.Writer
	for o := range c.outs {
		w := o.stdout
		if stream == "stderr" && !c.cfg.Tty {
			w = o.stderr
		}
		if w != nil {
			ws = append(ws, w)
		}
	}
	e.mu.Unlock()
	for _, w := range ws {
		_, _ = w.Write(p)
	}
}

func (e *fakeEngine) Start(ctx context.Context, name string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, err := e.find(name)
	if err != nil {
		return err
	}
	switch c.state {
	case container.StateRunning:
		return engine.ErrNotModified
	case container.StatePaused:
		return engine.WithKind(engine.ErrConflict, "cannot start a paused container, try unpause instead")
	}
	prog, err := fakeProgram(c.cfg.Cmd)
	if err != nil {
		return fmt.Errorf("starting container process: %w", err)
	}
	if c.exited != nil { // a second run gets a fresh stdin
		c.stdinR, c.stdinW = io.Pipe()
	}
	c.state, c.exitCode = container.StateRunning, 0
	c.kill = make(chan int, 1)
	c.exited = make(chan struct{})
	stdinR, kill, exited := c.stdinR, c.kill, c.exited
	go func() {
		code := prog(stdinR, func(s string, p []byte) { e.emit(c, s, p) }, kill)
		stdinR.CloseWithError(io.ErrClosedPipe)
		e.mu.Lock()
		defer e.mu.Unlock()
		c.state, c.exitCode = container.StateExited, code
		close(exited)
		close(c.nextExit)
		c.nextExit = make(chan struct{})
		close(c.logsMore)
		c.logsMore = make(chan struct{})
		if c.host != nil && c.host.AutoRemove {
			delete(e.ctrs, c.id)
			close(c.removed)
		}
	}()
	return nil
}

// fakeSignal parses a signal name or number.
func fakeSignal(s string) (int, error) {
	names := map[string]int{"HUP": 1, "INT": 2, "QUIT": 3, "KILL": 9, "USR1": 10, "USR2": 12, "TERM": 15}
	if s == "" {
		return 9, nil
	}
	if n, err := strconv.Atoi(s); err == nil && n > 0 && n < 65 {
		return n, nil
	}
	if n, ok := names[strings.TrimPrefix(strings.ToUpper(s), "SIG")]; ok {
		return n, nil
	}
	return 0, engine.WithKind(engine.ErrInvalid, fmt.Sprintf("invalid signal: %s", s))
}

func (e *fakeEngine) signal(c *fakeCtr, sig int) {
	select {
	case c.kill <- sig:
	default:
	}
}

func (e *fakeEngine) Stop(ctx context.Context, name string, opts engine.StopOptions) error {
	e.mu.Lock()
	e.stops = append(e.stops, opts)
	c, err := e.find(name)
	if err != nil {
		e.mu.Unlock()
		return err
	}
	if c.state != container.StateRunning && c.state != container.StatePaused {
		e.mu.Unlock()
		return engine.ErrNotModified
	}
	sig, err := fakeSignal(cmpOr(opts.Signal, "TERM"))
	if err != nil {
		e.mu.Unlock()
		return err
	}
	e.signal(c, sig)
	exited := c.exited
	e.mu.Unlock()
	select {
	case <-exited:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func (e *fakeEngine) Restart(ctx context.Context, name string, opts engine.StopOptions) error {
	if err := e.Stop(ctx, name, opts); err != nil && !errors.Is(err, engine.ErrNotModified) {
		return err
	}
	return e.Start(ctx, name)
}

func (e *fakeEngine) Kill(ctx context.Context, name, signal string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, err := e.find(name)
	if err != nil {
		return err
	}
	if c.state != container.StateRunning && c.state != container.StatePaused {
		return engine.WithKind(engine.ErrConflict, fmt.Sprintf("Cannot kill container: %s: container %s is not running", name, c.id))
	}
	sig, err := fakeSignal(signal)
	if err != nil {
		return err
	}
	e.signal(c, sig)
	return nil
}

func (e *fakeEngine) setPaused(name string, from, to container.ContainerState) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, err := e.find(name)
	if err != nil {
		return err
	}
	if c.state != from {
		return engine.WithKind(engine.ErrConflict, fmt.Sprintf("container %s is %s, not %s", name, c.state, from))
	}
	c.state = to
	return nil
}

func (e *fakeEngine) Pause(ctx context.Context, name string) error {
	return e.setPaused(name, container.StateRunning, container.StatePaused)
}

func (e *fakeEngine) Unpause(ctx context.Context, name string) error {
	return e.setPaused(name, container.StatePaused, container.StateRunning)
}

func (e *fakeEngine) Wait(ctx context.Context, name string, cond container.WaitCondition) (<-chan container.WaitResponse, error) {
	e.mu.Lock()
	c, err := e.find(name)
	if err != nil {
		e.mu.Unlock()
		return nil, err
	}
	var until <-chan struct{}
	switch cond {
	case container.WaitConditionNotRunning, "":
		if c.state == container.StateRunning || c.state == container.StatePaused {
			until = c.exited
		} else {
			closed := make(chan struct{})
			close(closed)
			until = closed
		}
	case container.WaitConditionNextExit:
		until = c.nextExit
	case container.WaitConditionRemoved:
		until = c.removed
	default:
		e.mu.Unlock()
		return nil, engine.WithKind(engine.ErrInvalid, "bad condition")
	}
	e.mu.Unlock()
	ch := make(chan container.WaitResponse, 1)
	go func() {
		select {
		case <-until:
			e.mu.Lock()
			code := c.exitCode
			e.mu.Unlock()
			ch <- container.WaitResponse{StatusCode: int64(code)}
		case <-ctx.Done():
			close(ch)
		}
	}()
	return ch, nil
}

func (e *fakeEngine) Rename(ctx context.Context, name, newName string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, err := e.find(name)
	if err != nil {
		return err
	}
	for _, o := range e.ctrs {
		if o.name == newName {
			return engine.WithKind(engine.ErrConflict, fmt.Sprintf("Conflict. The container name \"/%s\" is already in use", newName))
		}
	}
	c.name = newName
	return nil
}

func (e *fakeEngine) Remove(ctx context.Context, name string, opts engine.RemoveOptions) error {
	e.mu.Lock()
	c, err := e.find(name)
	if err != nil {
		e.mu.Unlock()
		return err
	}
	if c.state == container.StateRunning || c.state == container.StatePaused {
		if !opts.Force {
			e.mu.Unlock()
			return engine.WithKind(engine.ErrConflict, fmt.Sprintf("cannot remove container \"/%s\": container is running: stop the container before removing or force remove", c.name))
		}
		e.signal(c, 9)
		exited := c.exited
		e.mu.Unlock()
		<-exited
		e.mu.Lock()
	}
	defer e.mu.Unlock()
	if _, ok := e.ctrs[c.id]; ok {
		delete(e.ctrs, c.id)
		close(c.removed)
	}
	return nil
}

func (e *fakeEngine) Prune(ctx context.Context, filters map[string][]string) (container.PruneReport, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	rep := container.PruneReport{}
	for id, c := range e.ctrs {
		if c.state == container.StateRunning || c.state == container.StatePaused {
			continue
		}
		if !matchLabelFilters(c.cfg.Labels, filters) {
			continue
		}
		delete(e.ctrs, id)
		close(c.removed)
		rep.ContainersDeleted = append(rep.ContainersDeleted, id)
		rep.SpaceReclaimed += 1000
	}
	sort.Strings(rep.ContainersDeleted)
	return rep, nil
}

func matchLabelFilters(labels map[string]string, f map[string][]string) bool {
	has := func(l string) bool {
		k, v, withV := strings.Cut(l, "=")
		got, ok := labels[k]
		return ok && (!withV || got == v)
	}
	for _, l := range f["label"] {
		if !has(l) {
			return false
		}
	}
	for _, l := range f["label!"] {
		if has(l) {
			return false
		}
	}
	return true
}

func (e *fakeEngine) Attach(ctx context.Context, name string, opts engine.AttachOptions) error {
	e.mu.Lock()
	c, err := e.find(name)
	if err != nil {
		e.mu.Unlock()
		return err
	}
	if c.state == container.StatePaused {
		e.mu.Unlock()
		return engine.WithKind(engine.ErrConflict, "container "+name+" is paused, unpause the container before attach")
	}
	var replay []engine.LogEntry
	if opts.Logs {
		replay = append(replay, c.logs...)
	}
	out := &fakeOut{stdout: opts.Stdout, stderr: opts.Stderr}
	until := c.nextExit
	if opts.Stream {
		c.outs[out] = struct{}{}
	}
	stdinW := c.stdinW
	tty := c.cfg.Tty
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(c.outs, out)
		e.mu.Unlock()
	}()
	for _, l := range replay {
		w := opts.Stdout
		if l.Stream == "stderr" && !tty {
			w = opts.Stderr
		}
		if w != nil {
			if _, err := w.Write(l.Line); err != nil {
				return err
			}
		}
	}
	if !opts.Stream {
		return nil
	}
	if opts.Stdin != nil {
		go func() {
			_, err := io.Copy(stdinW, opts.Stdin)
			if err == nil && opts.StdinOnce {
				stdinW.Close()
			}
		}()
	}
	if opts.OnAttached != nil {
		opts.OnAttached()
	}
	select {
	case <-until:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (e *fakeEngine) Resize(ctx context.Context, name string, height, width uint) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, err := e.find(name); err != nil {
		return err
	}
	e.resizes = append(e.resizes, fmt.Sprintf("%s %dx%d", name, height, width))
	return nil
}

func (e *fakeEngine) Logs(ctx context.Context, name string, opts engine.LogsOptions, fn func(engine.LogEntry) error) error {
	e.mu.Lock()
	c, err := e.find(name)
	if err != nil {
		e.mu.Unlock()
		return err
	}
	match := func(l engine.LogEntry) bool {
		return (l.Stream == "stdout" && opts.Stdout || l.Stream == "stderr" && opts.Stderr) &&
			(opts.Since.IsZero() || !l.Time.Before(opts.Since)) && (opts.Until.IsZero() || !l.Time.After(opts.Until))
	}
	var first []engine.LogEntry
	for _, l := range c.logs {
		if match(l) {
			first = append(first, l)
		}
	}
	if opts.Tail >= 0 && len(first) > opts.Tail {
		first = first[len(first)-opts.Tail:]
	}
	seen := len(c.logs)
	more := c.logsMore
	e.mu.Unlock()
	for _, l := range first {
		if err := fn(l); err != nil {
			return err
		}
	}
	if !opts.Follow {
		return nil
	}
	for {
		e.mu.Lock()
		running := c.state == container.StateRunning || c.state == container.StatePaused
		fresh := append([]engine.LogEntry(nil), c.logs[seen:]...)
		seen = len(c.logs)
		more = c.logsMore
		e.mu.Unlock()
		for _, l := range fresh {
			if match(l) {
				if err := fn(l); err != nil {
					return err
				}
			}
		}
		if !running {
			return nil
		}
		select {
		case <-more:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (e *fakeEngine) Top(ctx context.Context, name, psArgs string) (container.TopResponse, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, err := e.find(name)
	if err != nil {
		return container.TopResponse{}, err
	}
	if c.state != container.StateRunning {
		return container.TopResponse{}, engine.WithKind(engine.ErrConflict, "container "+name+" is not running")
	}
	e.topArgs = append(e.topArgs, psArgs)
	return container.TopResponse{Titles: []string{"UID", "PID", "CMD"}, Processes: [][]string{{"root", "1", strings.Join(c.cfg.Cmd, " ")}}}, nil
}

func (e *fakeEngine) Stats(ctx context.Context, name string) (container.StatsResponse, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, err := e.find(name)
	if err != nil {
		return container.StatsResponse{}, err
	}
	c.statsN++
	n := c.statsN
	return container.StatsResponse{
		ID: c.id, Name: "/" + c.name, Read: time.Now(),
		CPUStats:    container.CPUStats{CPUUsage: container.CPUUsage{TotalUsage: n * 10_000_000}, SystemUsage: n * 100_000_000, OnlineCPUs: 2},
		MemoryStats: container.MemoryStats{Usage: 1 << 20, Limit: 1 << 30},
		PidsStats:   container.PidsStats{Current: 1},
	}, nil
}

func (e *fakeEngine) Changes(ctx context.Context, name string) ([]container.FilesystemChange, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, err := e.find(name)
	if err != nil {
		return nil, err
	}
	return append([]container.FilesystemChange(nil), c.changes...), nil
}

// tarOf writes the files under root (itself included, named base).
func tarOf(c *fakeCtr, root, base string, w io.Writer) error {
	tw := tar.NewWriter(w)
	var names []string
	for p := range c.files {
		if p == root || root == "/" && p != "/" || strings.HasPrefix(p, root+"/") {
			names = append(names, p)
		}
	}
	sort.Strings(names)
	for _, p := range names {
		f := c.files[p]
		rel := strings.TrimPrefix(strings.TrimPrefix(p, root), "/")
		n := path.Join(base, rel)
		if n == "" || n == "." {
			continue
		}
		hdr := &tar.Header{Name: n, Mode: int64(f.mode.Perm()), ModTime: f.time, Typeflag: tar.TypeReg, Size: int64(len(f.data))}
		if f.mode.IsDir() {
			hdr.Typeflag, hdr.Name, hdr.Size = tar.TypeDir, n+"/", 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := tw.Write(f.data); err != nil {
			return err
		}
	}
	return tw.Close()
}

func (e *fakeEngine) Export(ctx context.Context, name string, w io.Writer) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, err := e.find(name)
	if err != nil {
		return err
	}
	return tarOf(c, "/", "", w)
}

func (e *fakeEngine) statLocked(c *fakeCtr, p string) (container.PathStat, error) {
	p = path.Clean("/" + p)
	f, ok := c.files[p]
	if !ok {
		return container.PathStat{}, engine.WithKind(engine.ErrNotFound, fmt.Sprintf("Could not find the file %s in container %s", p, c.name))
	}
	return container.PathStat{Name: path.Base(p), Size: int64(len(f.data)), Mode: f.mode, Mtime: f.time}, nil
}

func (e *fakeEngine) StatPath(ctx context.Context, name, p string) (container.PathStat, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, err := e.find(name)
	if err != nil {
		return container.PathStat{}, err
	}
	return e.statLocked(c, p)
}

func (e *fakeEngine) CopyFrom(ctx context.Context, name, p string, stat func(container.PathStat), w io.Writer) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, err := e.find(name)
	if err != nil {
		return err
	}
	st, err := e.statLocked(c, p)
	if err != nil {
		return err
	}
	stat(st)
	clean := path.Clean("/" + p)
	return tarOf(c, clean, path.Base(clean), w)
}

func (e *fakeEngine) CopyTo(ctx context.Context, name, p string, r io.Reader, opts engine.CopyToOptions) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, err := e.find(name)
	if err != nil {
		return err
	}
	dir := path.Clean("/" + p)
	d, ok := c.files[dir]
	if !ok {
		return engine.WithKind(engine.ErrNotFound, fmt.Sprintf("Could not find the file %s in container %s", dir, c.name))
	}
	if !d.mode.IsDir() {
		return engine.WithKind(engine.ErrInvalid, "extraction point is not a directory")
	}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return engine.WithKind(engine.ErrInvalid, "reading the archive: "+err.Error())
		}
		target := path.Join(dir, path.Clean("/"+hdr.Name))
		if old, ok := c.files[target]; ok && opts.NoOverwriteDirNonDir && old.mode.IsDir() != (hdr.Typeflag == tar.TypeDir) {
			return engine.WithKind(engine.ErrInvalid, "cannot overwrite "+target)
		}
		f := &fakeFile{mode: os.FileMode(hdr.Mode).Perm(), time: hdr.ModTime}
		if hdr.Typeflag == tar.TypeDir {
			f.mode |= os.ModeDir
		} else if f.data, err = io.ReadAll(tr); err != nil {
			return err
		}
		kind := container.ChangeAdd
		if _, ok := c.files[target]; ok {
			kind = container.ChangeModify
		}
		c.files[target] = f
		c.changes = append(c.changes, container.FilesystemChange{Kind: kind, Path: target})
	}
}

func (e *fakeEngine) Commit(ctx context.Context, name string, opts engine.CommitOptions) (string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, err := e.find(name)
	if err != nil {
		return "", err
	}
	e.commits = append(e.commits, opts)
	sum := sha256.Sum256([]byte(c.id + opts.Reference))
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

func (e *fakeEngine) ExecCreate(ctx context.Context, name string, req container.ExecCreateRequest) (string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, err := e.find(name)
	if err != nil {
		return "", err
	}
	if c.state != container.StateRunning {
		return "", engine.WithKind(engine.ErrConflict, fmt.Sprintf("container %s is not running", c.id))
	}
	id := e.newID()
	e.execs[id] = &fakeExec{id: id, ctr: c, req: req, kill: make(chan int, 1)}
	return id, nil
}

func (e *fakeEngine) ExecStart(ctx context.Context, execID string, opts engine.ExecStartOptions) error {
	e.mu.Lock()
	x, ok := e.execs[execID]
	if !ok {
		e.mu.Unlock()
		return engine.WithKind(engine.ErrNotFound, "No such exec instance: "+execID)
	}
	if x.started {
		e.mu.Unlock()
		return engine.WithKind(engine.ErrConflict, "exec "+execID+" has already been started")
	}
	x.started = true
	prog, err := fakeProgram(x.req.Cmd)
	if err != nil {
		code := 127
		x.exitCode = &code
		e.mu.Unlock()
		return fmt.Errorf("OCI runtime exec failed: %w", err)
	}
	x.running = true
	e.mu.Unlock()
	if opts.OnStarted != nil {
		opts.OnStarted()
	}
	var mu sync.Mutex
	out := func(stream string, p []byte) {
		mu.Lock()
		defer mu.Unlock()
		w := opts.Stdout
		if stream == "stderr" && !opts.Tty {
			w = opts.Stderr
		}
		if w != nil {
			_, _ = w.Write(p)
		}
	}
	var stdin io.Reader = eofReader{}
	if opts.Stdin != nil {
		stdin = opts.Stdin
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		code := prog(stdin, out, x.kill)
		e.mu.Lock()
		x.running, x.exitCode = false, &code
		e.mu.Unlock()
	}()
	if opts.Detach {
		return nil
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done(): // the client detached: the process goes on
		return ctx.Err()
	}
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

func (e *fakeEngine) ExecResize(ctx context.Context, execID string, height, width uint) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.execs[execID]; !ok {
		return engine.WithKind(engine.ErrNotFound, "No such exec instance: "+execID)
	}
	e.resizes = append(e.resizes, fmt.Sprintf("exec %dx%d", height, width))
	return nil
}

func (e *fakeEngine) ExecInspect(ctx context.Context, execID string) (container.ExecInspectResponse, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	x, ok := e.execs[execID]
	if !ok {
		return container.ExecInspectResponse{}, engine.ErrNotFound
	}
	var keys []byte // the request's text, as guestagent/daemon keeps it
	if x.req.DetachKeys != "" {
		keys = []byte(x.req.DetachKeys)
	}
	return container.ExecInspectResponse{
		ID: x.id, Running: x.running, ExitCode: x.exitCode, ContainerID: x.ctr.id,
		ProcessConfig: &container.ExecProcessConfig{Tty: x.req.Tty, Entrypoint: x.req.Cmd[0], Arguments: x.req.Cmd[1:]},
		OpenStdin:     x.req.AttachStdin, OpenStdout: x.req.AttachStdout, OpenStderr: x.req.AttachStderr,
		DetachKeys: keys,
	}, nil
}

// fakeVolumes is an in-memory engine.Volumes with Usage; tests mark
// volumes in use.
type fakeVolumes struct {
	mu    sync.Mutex
	vols  map[string]volume.Volume
	inUse map[string]bool
	seq   int
}

var (
	_ engine.Volumes = (*fakeVolumes)(nil)
	_ volumeUsager   = (*fakeVolumes)(nil)
)

func newFakeVolumes() *fakeVolumes {
	return &fakeVolumes{vols: map[string]volume.Volume{}, inUse: map[string]bool{}}
}

func (f *fakeVolumes) setInUse(name string, on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inUse[name] = on
}

func (f *fakeVolumes) Create(ctx context.Context, req volume.CreateRequest) (volume.Volume, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	name := req.Name
	if name == "" {
		f.seq++
		sum := sha256.Sum256([]byte(fmt.Sprint("volume", f.seq)))
		name = hex.EncodeToString(sum[:])
	}
	if v, ok := f.vols[name]; ok {
		if req.Driver != "" && req.Driver != v.Driver {
			return volume.Volume{}, engine.WithKind(engine.ErrConflict, "volume "+name+" exists with another driver")
		}
		return v, nil
	}
	if req.Driver != "" && req.Driver != "local" {
		return volume.Volume{}, engine.WithKind(engine.ErrNotFound, "plugin \""+req.Driver+"\" not found")
	}
	labels := req.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	opts := req.DriverOpts
	if opts == nil {
		opts = map[string]string{}
	}
	v := volume.Volume{Name: name, Driver: "local", Labels: labels, Options: opts, Scope: "local",
		Mountpoint: "/var/lib/berth/volumes/" + name + "/_data", CreatedAt: time.Now().UTC().Format(time.RFC3339)}
	f.vols[name] = v
	return v, nil
}

func (f *fakeVolumes) List(ctx context.Context, filters map[string][]string) ([]volume.Volume, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []volume.Volume
	for _, v := range f.vols {
		ok := matchLabelFilters(v.Labels, filters)
		for _, n := range filters["name"] {
			ok = ok && strings.Contains(v.Name, n)
		}
		for _, d := range filters["dangling"] {
			ok = ok && (d == "true" || d == "1") == !f.inUse[v.Name]
		}
		if ok {
			out = append(out, v)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (f *fakeVolumes) Inspect(ctx context.Context, name string) (volume.Volume, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.vols[name]
	if !ok {
		return volume.Volume{}, engine.ErrNotFound
	}
	return v, nil
}

func (f *fakeVolumes) Remove(ctx context.Context, name string, force bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.vols[name]; !ok {
		return engine.WithKind(engine.ErrNotFound, "get "+name+": no such volume")
	}
	if f.inUse[name] && !force {
		return engine.WithKind(engine.ErrConflict, "remove "+name+": volume is in use")
	}
	delete(f.vols, name)
	return nil
}

func (f *fakeVolumes) Prune(ctx context.Context, filters map[string][]string) (volume.PruneReport, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	all := len(filters["all"]) > 0 && (filters["all"][0] == "true" || filters["all"][0] == "1")
	rep := volume.PruneReport{}
	for name, v := range f.vols {
		if f.inUse[name] || !matchLabelFilters(v.Labels, filters) {
			continue
		}
		if _, anon := v.Labels["com.docker.volume.anonymous"]; !anon && !all {
			continue
		}
		delete(f.vols, name)
		rep.VolumesDeleted = append(rep.VolumesDeleted, name)
		rep.SpaceReclaimed += 4096
	}
	sort.Strings(rep.VolumesDeleted)
	return rep, nil
}

// Usage reports every volume as 4 KiB, referenced when in use.
func (f *fakeVolumes) Usage(ctx context.Context) ([]volume.Volume, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []volume.Volume
	for name, v := range f.vols {
		ref := int64(0)
		if f.inUse[name] {
			ref = 1
		}
		v.UsageData = &volume.UsageData{Size: 4096, RefCount: ref}
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
