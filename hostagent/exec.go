package hostagent

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/berthvm/berth/guestagent/api"
)

// ExecOptions describes a process to run in the guest.
type ExecOptions struct {
	Argv    []string
	Env     []string
	Workdir string
	Tty     bool
	Size    *api.WindowSize
	Stdin   io.Reader // nil: the process gets no input
	Stdout  io.Writer
	Stderr  io.Writer
	Resize  <-chan *api.WindowSize // terminal size changes, with Tty
}

// Exec runs a process in the guest and returns its exit code.
func Exec(ctx context.Context, c api.AgentClient, o ExecOptions) (int, error) {
	if len(o.Argv) == 0 {
		return 0, errors.New("exec needs a command")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.Exec(ctx)
	if err != nil {
		return 0, fmt.Errorf("starting exec: %w", err)
	}
	start := &api.ExecStart{Argv: o.Argv, Env: o.Env, Workdir: o.Workdir, Tty: o.Tty, Size: o.Size}
	if err := stream.Send(&api.ExecRequest{Msg: &api.ExecRequest_Start{Start: start}}); err != nil {
		return 0, fmt.Errorf("starting exec: %w", err)
	}
	// gRPC streams allow one sender at a time: stdin and resize messages
	// go through this channel to a single sending goroutine.
	send := make(chan *api.ExecRequest, 16)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case m := <-send:
				if stream.Send(m) != nil {
					return
				}
			}
		}
	}()
	queue := func(m *api.ExecRequest) bool {
		select {
		case send <- m:
			return true
		case <-ctx.Done():
			return false
		}
	}
	if o.Stdin != nil {
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := o.Stdin.Read(buf)
				if n > 0 {
					b := append([]byte(nil), buf[:n]...)
					if !queue(&api.ExecRequest{Msg: &api.ExecRequest_Stdin{Stdin: b}}) {
						return
					}
				}
				if err != nil {
					queue(&api.ExecRequest{Msg: &api.ExecRequest_StdinClose{StdinClose: true}})
					return
				}
			}
		}()
	} else {
		queue(&api.ExecRequest{Msg: &api.ExecRequest_StdinClose{StdinClose: true}})
	}
	if o.Resize != nil {
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case sz := <-o.Resize:
					if !queue(&api.ExecRequest{Msg: &api.ExecRequest_Resize{Resize: sz}}) {
						return
					}
				}
			}
		}()
	}
	stdout, stderr := o.Stdout, o.Stderr
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	for {
		m, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return 0, errors.New("the guest agent ended the exec without an exit status")
			}
			return 0, fmt.Errorf("exec: %w", err)
		}
		switch x := m.Msg.(type) {
		case *api.ExecResponse_Stdout:
			if _, err := stdout.Write(x.Stdout); err != nil {
				return 0, fmt.Errorf("writing output: %w", err)
			}
		case *api.ExecResponse_Stderr:
			if _, err := stderr.Write(x.Stderr); err != nil {
				return 0, fmt.Errorf("writing output: %w", err)
			}
		case *api.ExecResponse_Exit:
			return int(x.Exit.Code), nil
		}
	}
}
