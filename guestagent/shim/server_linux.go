package shim

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/utils"
	"golang.org/x/sys/unix"
)

// server is the shim process's side: one container, its output, its
// execs and the RPC socket.
type server struct {
	log  *slog.Logger
	dir  string
	spec Spec

	ctr      *libcontainer.Container
	init     *libcontainer.Process
	pid      int
	warnings []string

	stdin   io.WriteCloser // the container's stdin, nil when not open
	console *os.File       // the tty master, with Process.Tty
	out     *hub

	startOnce sync.Once
	startErr  error

	exited chan struct{}
	exit   Exit

	mu    sync.Mutex
	execs map[string]*execProc

	deleted chan struct{}
	delOnce sync.Once
}

type execProc struct {
	proc    *libcontainer.Process
	pid     int
	console *os.File
	done    chan struct{}
	exit    Exit
}

// serveShim is the body of "berth-guestagent shim --state-dir DIR": it
// creates the container, reports on ready (an inherited pipe), serves
// the socket, and returns after Delete.
func serveShim(ctx context.Context, log *slog.Logger, dir string, ready *os.File) error {
	s, err := newServer(ctx, log, dir)
	var l net.Listener
	if err == nil {
		sock := filepath.Join(dir, socketFile)
		os.Remove(sock)
		if l, err = net.Listen("unix", sock); err != nil {
			err = fmt.Errorf("listening on %s: %w", sock, err)
			s.ctr.Destroy()
			unmountRootfs(s.spec)
		}
	}
	if ready != nil {
		var r response
		if err != nil {
			r.Error = err.Error()
		}
		werr := writeLine(ready, r)
		ready.Close()
		if err == nil && werr != nil {
			log.Warn("reporting readiness", "err", werr)
		}
	}
	if err != nil {
		return err
	}
	return s.serve(ctx, l)
}

func newServer(ctx context.Context, log *slog.Logger, dir string) (_ *server, retErr error) {
	s := &server{
		log:     log,
		dir:     dir,
		exited:  make(chan struct{}),
		execs:   map[string]*execProc{},
		deleted: make(chan struct{}),
	}
	if err := readJSON(filepath.Join(dir, specFile), &s.spec); err != nil {
		return nil, fmt.Errorf("reading the container spec: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("becoming a child subreaper: %w", err)
	}
	if s.spec.UserNS && s.spec.Upper != "" {
		// The remapped root must own the root directory (the upper
		// dir's own inode) to make its mount points there; the image's
		// files stay host root's and show as nobody, as dockerd's
		// without a remapped layer store.
		for _, d := range []string{s.spec.Upper, s.spec.Work} {
			if err := os.Chown(d, userNSBase, userNSBase); err != nil {
				return nil, fmt.Errorf("handing the writable layer to the remapped root: %w", err)
			}
		}
	}
	if err := mountRootfs(s.spec); err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			unmountRootfs(s.spec)
		}
	}()

	ociS, warnings, err := ociSpec(s.spec, "/berth/"+s.spec.ID)
	if err != nil {
		return nil, err
	}
	s.warnings = warnings
	if s.spec.UserNS {
		if err := makeMountPoints(s.spec.Rootfs, ociS.Mounts); err != nil {
			return nil, err
		}
	}
	cfg, err := libcontainerConfig(s.spec.ID, ociS, s.spec.Privileged)
	if err != nil {
		return nil, err
	}
	ctr, err := libcontainer.Create(filepath.Join(dir, runcRoot), s.spec.ID, cfg)
	if err != nil {
		return nil, fmt.Errorf("creating container: %w", err)
	}
	s.ctr = ctr
	defer func() {
		if retErr != nil {
			ctr.Destroy()
		}
	}()

	var logw *jsonLog
	if s.spec.LogPath != "" {
		f, err := os.OpenFile(s.spec.LogPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
		if err != nil {
			return nil, fmt.Errorf("opening the container log: %w", err)
		}
		logw = newJSONLog(f, nil)
	}
	s.out = newHub(logw, log)

	p := s.spec.Process
	proc := &libcontainer.Process{
		Args:             p.Args,
		Env:              ociS.Process.Env,
		Cwd:              ociS.Process.Cwd,
		UID:              int(p.UID),
		GID:              int(p.GID),
		AdditionalGroups: intsOf(p.AdditionalGIDs),
		Init:             true,
		ConsoleWidth:     p.Width,
		ConsoleHeight:    p.Height,
	}
	var closeAfter []io.Closer
	var outputs []func()
	if p.Tty {
		parent, child, err := consolePair()
		if err != nil {
			return nil, err
		}
		defer parent.Close()
		closeAfter = append(closeAfter, child)
		proc.ConsoleSocket = child
		if err := ctr.Start(proc); err != nil {
			child.Close()
			return nil, fmt.Errorf("starting container init: %w", err)
		}
		child.Close()
		master, err := utils.RecvFile(parent)
		if err != nil {
			proc.Signal(unix.SIGKILL)
			return nil, fmt.Errorf("receiving the container's console: %w", err)
		}
		s.console = master
		if p.Width > 0 && p.Height > 0 {
			resize(master, p.Width, p.Height)
		}
		if s.spec.OpenStdin {
			s.stdin = master
		}
		outputs = append(outputs, func() { s.out.copy(streamStdout, master) })
	} else {
		stdoutR, stdoutW, err := os.Pipe()
		if err != nil {
			return nil, fmt.Errorf("making stdout pipe: %w", err)
		}
		stderrR, stderrW, err := os.Pipe()
		if err != nil {
			return nil, fmt.Errorf("making stderr pipe: %w", err)
		}
		proc.Stdout, proc.Stderr = stdoutW, stderrW
		closeAfter = append(closeAfter, stdoutW, stderrW)
		if s.spec.OpenStdin {
			r, w, err := os.Pipe()
			if err != nil {
				return nil, fmt.Errorf("making stdin pipe: %w", err)
			}
			proc.Stdin = r
			closeAfter = append(closeAfter, r)
			s.stdin = w
		}
		if err := ctr.Start(proc); err != nil {
			for _, c := range closeAfter {
				c.Close()
			}
			return nil, fmt.Errorf("starting container init: %w", err)
		}
		outputs = append(outputs,
			func() { s.out.copy(streamStdout, stdoutR) },
			func() { s.out.copy(streamStderr, stderrR) })
	}
	for _, c := range closeAfter {
		c.Close()
	}
	s.init = proc
	pid, err := proc.Pid()
	if err != nil {
		return nil, fmt.Errorf("getting container pid: %w", err)
	}
	s.pid = pid

	var outWG sync.WaitGroup
	for _, f := range outputs {
		outWG.Add(1)
		go func() { defer outWG.Done(); f() }()
	}
	go s.waitInit(&outWG)

	if err := writeJSONAtomic(filepath.Join(dir, stateFile), shimState{ShimPid: os.Getpid(), Pid: pid, Warnings: warnings}); err != nil {
		return nil, err
	}
	return s, nil
}

func intsOf(u []uint32) []int {
	out := make([]int, len(u))
	for i, v := range u {
		out[i] = int(v)
	}
	return out
}

func consolePair() (parent, child *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("making console socket: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "console-parent"), os.NewFile(uintptr(fds[1]), "console-child"), nil
}

func resize(f *os.File, w, h uint16) error {
	if err := unix.IoctlSetWinsize(int(f.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Col: w, Row: h}); err != nil {
		return fmt.Errorf("resizing terminal: %w", err)
	}
	return nil
}

// waitInit records the init process's exit once its output has drained.
func (s *server) waitInit(outWG *sync.WaitGroup) {
	ps, err := s.init.Wait()
	exit := exitOf(ps, err)
	exit.OOMKilled = s.oomKilled()
	// Everything in the pid namespace dies with init, so the output
	// ends soon; a process outside it holding the pipe must not keep
	// the exit from being recorded.
	done := make(chan struct{})
	go func() { outWG.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		if s.console != nil {
			s.console.Close()
		}
	}
	s.out.close()
	exit.FinishedAt = time.Now().UTC()
	s.exit = exit
	if err := writeJSONAtomic(filepath.Join(s.dir, exitFile), exit); err != nil {
		s.log.Error("recording exit", "err", err)
	}
	s.log.Info("container exited", "code", exit.Code, "signal", exit.Signal, "oom", exit.OOMKilled)
	close(s.exited)
}

func exitOf(ps *os.ProcessState, err error) Exit {
	if ps == nil {
		return Exit{Code: 255, Error: fmt.Sprintf("waiting for process: %v", err)}
	}
	ws, ok := ps.Sys().(syscall.WaitStatus)
	if !ok {
		return Exit{Code: ps.ExitCode()}
	}
	if ws.Signaled() {
		return Exit{Code: 128 + int(ws.Signal()), Signal: int(ws.Signal())}
	}
	return Exit{Code: ws.ExitStatus()}
}

// oomKilled reads the cgroup's OOM kill count: memory.events on v2,
// memory.oom_control on v1.
func (s *server) oomKilled() bool {
	st, err := s.ctr.State()
	if err != nil {
		return false
	}
	for key, file := range map[string]string{"": "memory.events", "memory": "memory.oom_control"} {
		dir, ok := st.CgroupPaths[key]
		if !ok {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) == 2 && f[0] == "oom_kill" {
				if n, _ := strconv.ParseUint(f[1], 10, 64); n > 0 {
					return true
				}
			}
		}
	}
	return false
}

func (s *server) serve(ctx context.Context, l net.Listener) error {
	go func() {
		select {
		case <-ctx.Done():
		case <-s.deleted:
		}
		l.Close()
	}()
	for {
		c, err := l.Accept()
		if err != nil {
			select {
			case <-s.deleted:
				// Let the delete reply go out before exiting.
				time.Sleep(50 * time.Millisecond)
				return nil
			default:
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("accepting: %w", err)
		}
		go s.handle(c.(*net.UnixConn))
	}
}

func (s *server) handle(c *net.UnixConn) {
	defer c.Close()
	br := bufio.NewReader(c)
	var req request
	if err := readLine(br, &req); err != nil {
		s.log.Debug("bad request", "err", err)
		return
	}
	switch req.Op {
	case opAttach:
		s.attach(c, br, req)
		return
	case opExec:
		s.exec(c, br, req)
		return
	}
	resp := s.do(req)
	if err := writeLine(c, resp); err != nil {
		s.log.Debug("writing reply", "op", req.Op, "err", err)
	}
}

func errResp(err error) response {
	if err == nil {
		return response{}
	}
	return response{Error: err.Error()}
}

func (s *server) isExited() bool {
	select {
	case <-s.exited:
		return true
	default:
		return false
	}
}

func (s *server) do(req request) response {
	switch req.Op {
	case opState:
		r := response{Pid: s.pid}
		if s.isExited() {
			e := s.exit
			r.Exit = &e
		}
		return r
	case opStart:
		s.startOnce.Do(func() {
			if err := s.ctr.Exec(); err != nil {
				s.startErr = fmt.Errorf("starting container: %w", err)
			}
		})
		return errResp(s.startErr)
	case opSignal:
		if s.isExited() {
			return errResp(errors.New("container is not running"))
		}
		st, _ := s.ctr.Status()
		if err := s.ctr.Signal(unix.Signal(req.Signal)); err != nil {
			return errResp(fmt.Errorf("signalling container: %w", err))
		}
		if st == libcontainer.Paused && unix.Signal(req.Signal) == unix.SIGKILL {
			// A frozen process may die only once thawed; when it
			// died anyway there is nothing left to resume.
			if err := s.ctr.Resume(); err != nil {
				s.log.Debug("resuming killed container", "err", err)
			}
		}
		return response{}
	case opWait:
		<-s.exited
		e := s.exit
		return response{Exit: &e}
	case opPause:
		return errResp(s.ctr.Pause())
	case opResume:
		return errResp(s.ctr.Resume())
	case opResize:
		if s.console == nil {
			return errResp(errors.New("container has no tty"))
		}
		return errResp(resize(s.console, req.Width, req.Height))
	case opExecSig, opExecRsz, opExecWt:
		s.mu.Lock()
		e := s.execs[req.ExecID]
		s.mu.Unlock()
		if e == nil {
			return errResp(fmt.Errorf("no exec %q", req.ExecID))
		}
		switch req.Op {
		case opExecSig:
			return errResp(e.proc.Signal(unix.Signal(req.Signal)))
		case opExecRsz:
			if e.console == nil {
				return errResp(errors.New("exec has no tty"))
			}
			return errResp(resize(e.console, req.Width, req.Height))
		default:
			<-e.done
			x := e.exit
			return response{Exit: &x}
		}
	case opStats:
		st, err := s.stats()
		if err != nil {
			return errResp(err)
		}
		return response{Stats: &st}
	case opTop:
		pids, err := s.ctr.Processes()
		if err != nil {
			return errResp(fmt.Errorf("listing processes: %w", err))
		}
		return response{Pids: pids}
	case opDelete:
		return errResp(s.delete())
	}
	return errResp(fmt.Errorf("unknown operation %q", req.Op))
}

func (s *server) delete() error {
	if !s.isExited() {
		// A created container that never started (docker create, then
		// rm) has only libcontainer's waiting init to kill. A running
		// one is the engine's to stop first, as Docker's rm -f does.
		if st, err := s.ctr.Status(); err != nil || st != libcontainer.Created {
			return errors.New("container is running")
		}
		if err := s.ctr.Signal(unix.SIGKILL); err != nil {
			return fmt.Errorf("killing created container: %w", err)
		}
		select {
		case <-s.exited:
		case <-time.After(10 * time.Second):
			return errors.New("created container did not die")
		}
	}
	var errs []error
	if err := s.ctr.Destroy(); err != nil {
		errs = append(errs, fmt.Errorf("destroying container: %w", err))
	}
	if err := unmountRootfs(s.spec); err != nil {
		errs = append(errs, err)
	}
	if err := s.out.closeLog(); err != nil {
		errs = append(errs, err)
	}
	os.Remove(filepath.Join(s.dir, socketFile))
	s.delOnce.Do(func() { close(s.deleted) })
	return errors.Join(errs...)
}

// attach streams the container's output to the connection and its stdin
// from it, until the output ends or the client goes away.
func (s *server) attach(c *net.UnixConn, br *bufio.Reader, req request) {
	sub := &subscriber{conn: c, stdout: req.Stdout, stderr: req.Stderr, done: make(chan struct{})}
	live, err := s.out.add(sub, func() error {
		return writeLine(c, response{StdinFrames: req.StdinFrames})
	})
	if err != nil {
		return
	}
	if req.Stdin && s.stdin != nil && live {
		go func() {
			// Only the client's end of input closes stdin, and only
			// with StdinOnce and no tty, as in dockerd; a client that
			// goes away leaves it open for the next attach.
			if readStdin(s.stdin, br, req.StdinFrames) && s.spec.StdinOnce && s.console == nil {
				s.stdin.Close()
			}
		}()
	}
	if !live {
		return
	}
	<-sub.done
}

func (s *server) exec(c *net.UnixConn, br *bufio.Reader, req request) {
	if req.Process == nil || len(req.Process.Args) == 0 {
		writeLine(c, errResp(errors.New("exec needs a command")))
		return
	}
	if s.isExited() {
		writeLine(c, errResp(errors.New("container is not running")))
		return
	}
	if st, err := s.ctr.Status(); err == nil && st == libcontainer.Paused {
		// Joining a frozen cgroup would hang until resume.
		writeLine(c, errResp(errors.New("container is paused")))
		return
	}
	s.mu.Lock()
	_, dup := s.execs[req.ExecID]
	s.mu.Unlock()
	if dup {
		writeLine(c, errResp(fmt.Errorf("exec %q exists", req.ExecID)))
		return
	}
	p := *req.Process
	env := p.Env
	if !hasPath(env) {
		env = append(env, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	}
	cwd := p.Cwd
	if cwd == "" {
		cwd = "/"
	}
	proc := &libcontainer.Process{
		Args: p.Args, Env: env, Cwd: cwd,
		UID: int(p.UID), GID: int(p.GID), AdditionalGroups: intsOf(p.AdditionalGIDs),
		ConsoleWidth: p.Width, ConsoleHeight: p.Height,
	}
	e := &execProc{proc: proc, done: make(chan struct{})}
	var wmu sync.Mutex
	frame := func(stream byte) func([]byte) {
		return func(b []byte) {
			wmu.Lock()
			defer wmu.Unlock()
			writeFrame(c, stream, b)
		}
	}
	var outWG sync.WaitGroup
	var pumps []func() // started once the answer is written
	var stdinW io.WriteCloser
	if p.Tty {
		parent, child, err := consolePair()
		if err != nil {
			writeLine(c, errResp(err))
			return
		}
		defer parent.Close()
		proc.ConsoleSocket = child
		err = s.ctr.Run(proc)
		child.Close()
		if err != nil {
			writeLine(c, errResp(fmt.Errorf("starting exec: %w", err)))
			return
		}
		master, err := utils.RecvFile(parent)
		if err != nil {
			proc.Signal(unix.SIGKILL)
			writeLine(c, errResp(fmt.Errorf("receiving the exec's console: %w", err)))
			return
		}
		e.console = master
		if p.Width > 0 && p.Height > 0 {
			resize(master, p.Width, p.Height)
		}
		stdinW = master
		pumps = append(pumps, func() { pump(master, frame(streamStdout)) })
	} else {
		outR, outW, err := os.Pipe()
		if err != nil {
			writeLine(c, errResp(err))
			return
		}
		errR, errW, err := os.Pipe()
		if err != nil {
			writeLine(c, errResp(err))
			return
		}
		inR, inW, err := os.Pipe()
		if err != nil {
			writeLine(c, errResp(err))
			return
		}
		proc.Stdin, proc.Stdout, proc.Stderr = inR, outW, errW
		err = s.ctr.Run(proc)
		inR.Close()
		outW.Close()
		errW.Close()
		if err != nil {
			outR.Close()
			errR.Close()
			inW.Close()
			writeLine(c, errResp(fmt.Errorf("starting exec: %w", err)))
			return
		}
		stdinW = inW
		pumps = append(pumps,
			func() { pump(outR, frame(streamStdout)); outR.Close() },
			func() { pump(errR, frame(streamStderr)); errR.Close() })
	}
	e.pid, _ = proc.Pid()
	s.mu.Lock()
	s.execs[req.ExecID] = e
	s.mu.Unlock()

	// The answer goes first: the client decodes it before any frame.
	// The output waits in the pipe (or the tty) until the pumps start.
	beforeReply()
	if err := writeLine(c, response{Pid: e.pid, StdinFrames: req.StdinFrames}); err != nil {
		s.log.Debug("exec reply", "err", err)
	}
	for _, p := range pumps {
		outWG.Add(1)
		go func() { defer outWG.Done(); p() }()
	}
	go func() {
		// Without attached stdin the process reads EOF at once. With
		// it, only the client's end of input closes it (a tty is
		// never closed, as in dockerd); a client that detached leaves
		// the process running with its stdin open.
		eof := true
		if req.Stdin {
			eof = readStdin(stdinW, br, req.StdinFrames)
		}
		if eof && e.console == nil {
			stdinW.Close()
		}
	}()
	ps, werr := proc.Wait()
	if e.console == nil {
		stdinW.Close() // a detached client's pipe, no longer needed
	}
	x := exitOf(ps, werr)
	done := make(chan struct{})
	go func() { outWG.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		if e.console != nil {
			e.console.Close()
		}
	}
	x.FinishedAt = time.Now().UTC()
	e.exit = x
	close(e.done)
	if e.console != nil {
		e.console.Close()
	}
}

func hasPath(env []string) bool {
	for _, e := range env {
		if strings.HasPrefix(e, "PATH=") {
			return true
		}
	}
	return false
}

// beforeReply runs before the shim writes its answer to an exec or an
// attach request. Tests set it, through BERTH_SHIM_TEST_REPLY_DELAY in a
// test binary's init, to make output race the answer.
var beforeReply = func() {}

// pump reads r until EOF (or EIO, as a tty master reports a closed
// slave) and hands each chunk to f.
func pump(r io.Reader, f func([]byte)) {
	buf := make([]byte, 32*1024)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			f(buf[:n])
		}
		if err != nil {
			return
		}
	}
}

// hub copies the container's output to the log and to attached clients.
type hub struct {
	log    *slog.Logger
	jl     *jsonLog
	mu     sync.Mutex
	subs   map[*subscriber]struct{}
	closed bool
}

type subscriber struct {
	conn           net.Conn
	stdout, stderr bool
	done           chan struct{}
	once           sync.Once
}

func (s *subscriber) end() { s.once.Do(func() { close(s.done) }) }

func newHub(jl *jsonLog, log *slog.Logger) *hub {
	return &hub{log: log, jl: jl, subs: map[*subscriber]struct{}{}}
}

func (h *hub) copy(stream byte, r io.Reader) {
	name := "stdout"
	if stream == streamStderr {
		name = "stderr"
	}
	pump(r, func(b []byte) { h.write(stream, name, b) })
}

func (h *hub) write(stream byte, name string, b []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.jl != nil {
		if err := h.jl.Write(name, b); err != nil {
			h.log.Warn("writing container log", "err", err)
		}
	}
	for sub := range h.subs {
		if (stream == streamStdout && !sub.stdout) || (stream == streamStderr && !sub.stderr) {
			continue
		}
		// A client that stops reading must not stall the container.
		sub.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if err := writeFrame(sub.conn, stream, b); err != nil {
			delete(h.subs, sub)
			sub.end()
		}
	}
}

// add calls reply, which writes the answer to the attach request, and
// then subscribes sub to the output unless the output is over. Both
// happen under the hub's lock, so no output frame reaches the client
// before the answer: a frame first would not decode as the answer. An
// error from reply is returned and sub is not added.
func (h *hub) add(sub *subscriber, reply func() error) (live bool, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	beforeReply()
	if err := reply(); err != nil {
		return false, err
	}
	if h.closed {
		return false, nil
	}
	h.subs[sub] = struct{}{}
	return true, nil
}

func (h *hub) remove(sub *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.subs, sub)
	sub.end()
}

// close ends every attach: the output is over.
func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for sub := range h.subs {
		sub.end()
	}
	h.subs = map[*subscriber]struct{}{}
	if h.jl != nil {
		if err := h.jl.Flush(); err != nil {
			h.log.Warn("flushing container log", "err", err)
		}
	}
}

func (h *hub) closeLog() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.jl == nil {
		return nil
	}
	err := h.jl.Close()
	h.jl = nil
	return err
}

// mountRootfs mounts the overlay at spec.Rootfs. Lowers may be relative
// to LowerBase, which keeps the mount options under a page.
func mountRootfs(s Spec) error {
	if len(s.Lowers) == 0 {
		return nil // Rootfs is ready as it is
	}
	if err := os.MkdirAll(s.Rootfs, 0o755); err != nil {
		return fmt.Errorf("making rootfs dir: %w", err)
	}
	if s.LowerBase != "" {
		if err := os.Chdir(s.LowerBase); err != nil {
			return fmt.Errorf("entering lower base: %w", err)
		}
	}
	var data string
	if s.Upper == "" {
		if len(s.Lowers) == 1 {
			if err := unix.Mount(s.Lowers[0], s.Rootfs, "", unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
				return fmt.Errorf("mounting rootfs: %w", err)
			}
			return nil
		}
		data = "lowerdir=" + strings.Join(s.Lowers, ":")
	} else {
		data = fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", strings.Join(s.Lowers, ":"), s.Upper, s.Work)
	}
	if err := unix.Mount("overlay", s.Rootfs, "overlay", 0, data); err != nil {
		return fmt.Errorf("mounting overlay rootfs: %w", err)
	}
	return nil
}

func unmountRootfs(s Spec) error {
	if len(s.Lowers) == 0 {
		return nil
	}
	if err := unix.Unmount(s.Rootfs, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmounting rootfs: %w", err)
	}
	return nil
}
