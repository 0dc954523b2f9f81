//go:build !windows

package main

import (
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/term"

	"github.com/berthvm/berth/guestagent/api"
)

// watchResize sends the terminal's size on every SIGWINCH.
func watchResize(fd int, out chan<- *api.WindowSize) (stop func()) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGWINCH)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-sig:
				if w, h, err := term.GetSize(fd); err == nil {
					select {
					case out <- &api.WindowSize{Rows: uint32(h), Cols: uint32(w)}:
					default:
					}
				}
			}
		}
	}()
	return func() { signal.Stop(sig); close(done) }
}
