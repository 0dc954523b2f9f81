package jsonlog

import (
	"encoding/binary"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// newWatcher watches the log's directory rather than the file, so that
// one watch sees the file appear, grow, and be replaced. Without inotify
// (or when the directory is missing) it polls.
func newWatcher(path string) *watcher {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return newPollWatcher()
	}
	const mask = unix.IN_MODIFY | unix.IN_CREATE | unix.IN_MOVED_TO | unix.IN_MOVED_FROM |
		unix.IN_CLOSE_WRITE | unix.IN_ATTRIB | unix.IN_DELETE | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF
	if _, err := unix.InotifyAddWatch(fd, filepath.Dir(path), mask); err != nil {
		unix.Close(fd)
		return newPollWatcher()
	}
	// A non-blocking descriptor goes to Go's poller, so Close wakes the
	// goroutine blocked in Read.
	f := os.NewFile(uintptr(fd), "inotify")
	w := &watcher{c: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		closeFn: func() { f.Close() }}
	go func() {
		defer close(w.done)
		if !w.readEvents(f, filepath.Base(path)) {
			// The watch broke (the directory went away): poll instead.
			w.wake()
			w.poll()
		}
	}()
	return w
}

// readEvents wakes Read on events about name, until the watcher closes
// (true) or the watch ends (false).
func (w *watcher) readEvents(f *os.File, name string) bool {
	buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
	for {
		n, err := f.Read(buf)
		if err != nil {
			select {
			case <-w.stop:
				return true
			default:
				return false
			}
		}
		wake, ended := false, false
		for b := buf[:n]; len(b) >= unix.SizeofInotifyEvent; {
			mask := binary.NativeEndian.Uint32(b[4:8])
			nameLen := int(binary.NativeEndian.Uint32(b[12:16]))
			end := unix.SizeofInotifyEvent + nameLen
			if end > len(b) {
				break
			}
			evName := string(trimNUL(b[unix.SizeofInotifyEvent:end]))
			b = b[end:]
			switch {
			case mask&(unix.IN_IGNORED|unix.IN_DELETE_SELF|unix.IN_MOVE_SELF|unix.IN_UNMOUNT) != 0:
				ended, wake = true, true
			case mask&unix.IN_Q_OVERFLOW != 0, evName == name:
				wake = true
			}
		}
		if wake {
			w.wake()
		}
		if ended {
			return false
		}
	}
}

func trimNUL(b []byte) []byte {
	for i, c := range b {
		if c == 0 {
			return b[:i]
		}
	}
	return b
}
