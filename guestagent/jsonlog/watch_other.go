//go:build !linux

package jsonlog

func newWatcher(path string) *watcher { return newPollWatcher() }
