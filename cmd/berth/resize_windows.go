package main

import (
	"time"

	"golang.org/x/term"

	"github.com/berthvm/berth/guestagent/api"
)

// watchResize polls the console size: Windows has no SIGWINCH.
func watchResize(fd int, out chan<- *api.WindowSize) (stop func()) {
	done := make(chan struct{})
	go func() {
		lw, lh, _ := term.GetSize(fd)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if w, h, err := term.GetSize(fd); err == nil && (w != lw || h != lh) {
					lw, lh = w, h
					select {
					case out <- &api.WindowSize{Rows: uint32(h), Cols: uint32(w)}:
					default:
					}
				}
			}
		}
	}()
	return func() { close(done) }
}
