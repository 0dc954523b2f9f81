//go:build unix

package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/creack/pty"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berthvm/berth/guestagent/api"
	"github.com/berthvm/berth/guestagent/reaper"
)

const (
	// DefaultPath is the PATH an Exec'd process gets unless it asks for
	// another.
	DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	// outputChunk is the largest stdout/stderr message.
	outputChunk = 32 << 10
	// drainGrace is how long output is still read after the process
	// exits. Pipes held open by a background child would otherwise keep
	// the call open forever; everything the process itself wrote is read
	// long before that.
	drainGrace = 2 * time.Second
	// stdinQueue bounds the stdin chunks waiting for a slow reader, so
	// that signals and resizes behind them are not held up for long.
	stdinQueue = 64
)

// Exec runs one process. See agent.proto for the message order.
func (s *Server) Exec(stream api.Agent_ExecServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	start := first.GetStart()
	if start == nil {
		return status.Error(codes.InvalidArgument, "the first Exec message must be start")
	}
	p, err := s.startProcess(start)
	if err != nil {
		return err
	}
	s.log.Debug("exec started", "argv", start.GetArgv(), "pid", p.cmd.Process.Pid, "tty", start.GetTty())
	return p.run(stream.Context(), stream)
}

// process is a started Exec process and the parent's ends of its stdio.
type process struct {
	s       *Server
	cmd     *exec.Cmd
	tty     bool
	ptmx    *os.File // the pty master when tty
	stdin   *os.File // where stdin goes: a pipe, or ptmx
	outputs []output
}

type output struct {
	f      *os.File
	stderr bool
}

func (s *Server) startProcess(start *api.ExecStart) (*process, error) {
	argv := start.GetArgv()
	if len(argv) == 0 || argv[0] == "" {
		return nil, status.Error(codes.InvalidArgument, "exec: argv is empty")
	}
	env, err := execEnv(start.GetEnv(), start.GetTty())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "exec: %v", err)
	}
	dir := start.GetWorkdir()
	if dir == "" {
		dir = "/"
	}
	if st, err := os.Stat(dir); err != nil {
		return nil, status.Errorf(codes.NotFound, "exec: workdir %s: %v", dir, err)
	} else if !st.IsDir() {
		return nil, status.Errorf(codes.InvalidArgument, "exec: workdir %s is not a directory", dir)
	}
	path, err := lookPath(argv[0], pathOf(env), dir)
	if err != nil {
		return nil, err
	}

	cmd := &exec.Cmd{
		Path: path,
		Args: argv,
		Env:  env,
		Dir:  dir,
		// Its own session, so it has its own process group (killed as a
		// whole when the client goes) and can take a controlling tty.
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	p := &process{s: s, cmd: cmd, tty: start.GetTty()}
	var child []*os.File // the child's ends, closed in the parent after start
	closeAll := func() {
		for _, f := range child {
			f.Close()
		}
		p.closeParent()
	}

	if p.tty {
		ptmx, tty, err := pty.Open()
		if err != nil {
			return nil, status.Errorf(codes.Internal, "exec: opening a pty: %v", err)
		}
		p.ptmx, p.stdin = ptmx, ptmx
		p.outputs = []output{{f: ptmx}}
		child = append(child, tty)
		if sz := start.GetSize(); sz != nil {
			if err := pty.Setsize(ptmx, &pty.Winsize{Rows: uint16(sz.GetRows()), Cols: uint16(sz.GetCols())}); err != nil {
				closeAll()
				return nil, status.Errorf(codes.Internal, "exec: setting the window size: %v", err)
			}
		}
		cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
		cmd.SysProcAttr.Setctty = true
		cmd.SysProcAttr.Ctty = 0 // the child's fd 0
	} else {
		// Plain *os.File stdio: os/exec starts no copying goroutines, and
		// the parent ends can be read with deadlines.
		inR, inW, err := os.Pipe()
		if err != nil {
			return nil, status.Errorf(codes.Internal, "exec: creating pipes: %v", err)
		}
		outR, outW, err := os.Pipe()
		if err != nil {
			inR.Close()
			inW.Close()
			return nil, status.Errorf(codes.Internal, "exec: creating pipes: %v", err)
		}
		errR, errW, err := os.Pipe()
		if err != nil {
			for _, f := range []*os.File{inR, inW, outR, outW} {
				f.Close()
			}
			return nil, status.Errorf(codes.Internal, "exec: creating pipes: %v", err)
		}
		p.stdin = inW
		p.outputs = []output{{f: outR}, {f: errR, stderr: true}}
		child = append(child, inR, outW, errW)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	}

	if err := s.cfg.Reaper.Start(cmd); err != nil {
		closeAll()
		return nil, startError(argv[0], err)
	}
	for _, f := range child {
		f.Close()
	}
	return p, nil
}

func (p *process) closeParent() {
	if p.stdin != nil && p.stdin != p.ptmx {
		p.stdin.Close()
	}
	for _, o := range p.outputs {
		o.f.Close()
	}
}

// run streams stdio until the process exits, then sends its exit status.
// If the client goes away first, the process group is killed.
func (p *process) run(ctx context.Context, stream api.Agent_ExecServer) error {
	defer p.closeParent()
	r := p.s.cfg.Reaper

	var sendMu sync.Mutex
	send := func(m *api.ExecResponse) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return stream.Send(m)
	}

	exited := make(chan reaper.Status, 1)
	go func() {
		st, err := r.Wait(context.Background(), p.cmd)
		if err != nil {
			p.s.log.Warn("exec: finishing process", "err", err)
		}
		exited <- st
	}()

	var readers sync.WaitGroup
	for _, o := range p.outputs {
		readers.Add(1)
		go func() {
			defer readers.Done()
			p.copyOutput(o, send)
		}()
	}

	go p.receive(stream)

	var st reaper.Status
	select {
	case st = <-exited:
	case <-ctx.Done():
		// The client is gone or gave up: nobody will read the output.
		if err := r.SignalGroup(p.cmd, syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
			p.s.log.Warn("exec: killing the process group of a gone client", "err", err)
		}
		st = <-exited
		p.stopReaders(&readers, time.Now())
		p.s.log.Debug("exec: client went away; process group killed", "status", st.String())
		return status.FromContextError(ctx.Err()).Err()
	}

	// Everything the process wrote is in the pipe or pty buffer by now;
	// read it all before the exit message.
	p.stopReaders(&readers, time.Now().Add(drainGrace))
	p.s.log.Debug("exec finished", "status", st.String())
	return send(&api.ExecResponse{Msg: &api.ExecResponse_Exit{Exit: &api.ExecExit{
		Code:   int32(st.Code),
		Signal: int32(st.Signal),
	}}})
}

// stopReaders lets the readers reach the end of their output or the
// deadline, whichever is first, and waits for them.
func (p *process) stopReaders(readers *sync.WaitGroup, deadline time.Time) {
	for _, o := range p.outputs {
		if err := o.f.SetReadDeadline(deadline); err != nil {
			// Not pollable: closing is the only way to stop a read.
			time.AfterFunc(time.Until(deadline), func() { o.f.Close() })
		}
	}
	readers.Wait()
}

func (p *process) copyOutput(o output, send func(*api.ExecResponse) error) {
	buf := make([]byte, outputChunk)
	for {
		n, err := o.f.Read(buf)
		if n > 0 {
			// Send marshals before it returns, so buf can be reused.
			var m *api.ExecResponse
			if o.stderr {
				m = &api.ExecResponse{Msg: &api.ExecResponse_Stderr{Stderr: buf[:n]}}
			} else {
				m = &api.ExecResponse{Msg: &api.ExecResponse_Stdout{Stdout: buf[:n]}}
			}
			if serr := send(m); serr != nil {
				return // the client is gone; run kills the process
			}
		}
		if err != nil {
			// io.EOF for pipes; EIO for a pty whose other side closed; a
			// deadline when run stops waiting.
			return
		}
	}
}

// receive applies the client's messages until the stream ends.
func (p *process) receive(stream api.Agent_ExecServer) {
	stdin := make(chan []byte, stdinQueue) // nil means close
	go func() {
		for b := range stdin {
			if b == nil {
				if p.tty {
					// A pty has no half-close; ^D ends input in canonical
					// mode, which is what a shell's stdin is.
					_, _ = p.stdin.Write([]byte{4})
				} else {
					p.stdin.Close()
				}
				continue
			}
			if _, err := p.stdin.Write(b); err != nil {
				p.s.log.Debug("exec: writing stdin", "err", err)
			}
		}
	}()
	defer close(stdin)
	r := p.s.cfg.Reaper
	for {
		req, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) && !p.tty {
				stdin <- nil // the client closed its side: no more input
			}
			return
		}
		switch m := req.GetMsg().(type) {
		case *api.ExecRequest_Stdin:
			if len(m.Stdin) > 0 {
				stdin <- m.Stdin
			}
		case *api.ExecRequest_StdinClose:
			if m.StdinClose {
				stdin <- nil
			}
		case *api.ExecRequest_Resize:
			if p.ptmx == nil {
				continue
			}
			ws := &pty.Winsize{Rows: uint16(m.Resize.GetRows()), Cols: uint16(m.Resize.GetCols())}
			if err := pty.Setsize(p.ptmx, ws); err != nil {
				p.s.log.Debug("exec: resize", "err", err)
			}
		case *api.ExecRequest_Signal:
			sig := syscall.Signal(m.Signal)
			if m.Signal <= 0 || m.Signal > 64 {
				p.s.log.Warn("exec: ignoring invalid signal", "signal", m.Signal)
				continue
			}
			if err := r.Signal(p.cmd, sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
				p.s.log.Debug("exec: signal", "signal", sig, "err", err)
			}
		case *api.ExecRequest_Start:
			p.s.log.Warn("exec: ignoring a second start message")
		}
	}
}

// execEnv is the process environment: a base of PATH, HOME and (with a
// tty) TERM, overridden key by key by the request.
func execEnv(req []string, tty bool) ([]string, error) {
	keys := []string{"PATH", "HOME"}
	vals := map[string]string{"PATH": DefaultPath, "HOME": "/root"}
	if tty {
		keys = append(keys, "TERM")
		vals["TERM"] = "xterm"
	}
	for _, kv := range req {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("env entry %q is not KEY=VALUE", kv)
		}
		if strings.ContainsRune(kv, 0) {
			return nil, fmt.Errorf("env entry %q holds a NUL byte", k)
		}
		if _, seen := vals[k]; !seen {
			keys = append(keys, k)
		}
		vals[k] = v
	}
	env := make([]string, 0, len(keys))
	for _, k := range keys {
		env = append(env, k+"="+vals[k])
	}
	return env, nil
}

func pathOf(env []string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], "PATH="); ok {
			return v
		}
	}
	return ""
}

// lookPath finds name like a shell would, in the process's PATH rather
// than the agent's. A name with a slash is taken as is (relative to dir).
func lookPath(name, path, dir string) (string, error) {
	if strings.ContainsRune(name, 0) {
		return "", status.Error(codes.InvalidArgument, "exec: argv[0] holds a NUL byte")
	}
	if strings.Contains(name, "/") {
		full := name
		if !filepath.IsAbs(full) {
			full = filepath.Join(dir, full)
		}
		if err := executable(full); err != nil {
			return "", lookError(name, err)
		}
		return full, nil
	}
	var firstErr error
	for _, d := range filepath.SplitList(path) {
		if d == "" {
			d = "."
		}
		full := filepath.Join(d, name)
		if !filepath.IsAbs(full) {
			full = filepath.Join(dir, full)
		}
		err := executable(full)
		if err == nil {
			return full, nil
		}
		if firstErr == nil && !errors.Is(err, fs.ErrNotExist) {
			firstErr = err
		}
	}
	if firstErr != nil {
		return "", lookError(name, firstErr)
	}
	return "", status.Errorf(codes.NotFound, "exec: %q: executable file not found in PATH", name)
}

func executable(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if st.IsDir() {
		return fmt.Errorf("%s is a directory: %w", path, fs.ErrPermission)
	}
	if st.Mode()&0o111 == 0 {
		return fmt.Errorf("%s is not executable: %w", path, fs.ErrPermission)
	}
	return nil
}

func lookError(name string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return status.Errorf(codes.NotFound, "exec: %q: no such file", name)
	case errors.Is(err, fs.ErrPermission):
		return status.Errorf(codes.PermissionDenied, "exec: %q: %v", name, err)
	default:
		return status.Errorf(codes.InvalidArgument, "exec: %q: %v", name, err)
	}
}

func startError(name string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return status.Errorf(codes.NotFound, "exec: starting %q: %v", name, err)
	case errors.Is(err, fs.ErrPermission):
		return status.Errorf(codes.PermissionDenied, "exec: starting %q: %v", name, err)
	case errors.Is(err, syscall.ENOEXEC):
		return status.Errorf(codes.InvalidArgument, "exec: starting %q: %v", name, err)
	default:
		return status.Errorf(codes.Internal, "exec: starting %q: %v", name, err)
	}
}
