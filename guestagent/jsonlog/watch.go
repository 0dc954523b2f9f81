package jsonlog

import "time"

// watcher tells Read that the log file may have changed. c holds at most
// one pending wake-up, so a change is never lost between a read and the
// next wait, and a burst of writes costs one read.
type watcher struct {
	c    chan struct{}
	stop chan struct{}
	done chan struct{}
	// closeFn releases the watch's resources (the inotify descriptor).
	closeFn func()
}

func (w *watcher) wake() {
	select {
	case w.c <- struct{}{}:
	default:
	}
}

func (w *watcher) close() {
	close(w.stop)
	if w.closeFn != nil {
		w.closeFn()
	}
	<-w.done
}

// newPollWatcher wakes Read every pollEvery: the fallback where inotify
// is unavailable.
func newPollWatcher() *watcher {
	w := &watcher{c: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		w.poll()
	}()
	return w
}

func (w *watcher) poll() {
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
			w.wake()
		}
	}
}
