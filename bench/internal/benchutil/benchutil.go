// Package benchutil holds what the benchmarks in bench/ share: finding the
// source tree, and order statistics of timings.
package benchutil

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"
)

// RepoRoot returns the berth source tree that holds the working directory:
// the nearest parent with a go.mod.
func RepoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", errors.New("not inside the berth source tree")
		}
	}
}

// Percentile returns the p-quantile (0 to 1) of ds, nearest rank below,
// without reordering ds. It panics on an empty ds.
func Percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[int(float64(len(s)-1)*p)]
}

// Median returns the middle of ds (the upper one of the two middles when
// len(ds) is even), without reordering ds. It panics on an empty ds.
func Median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// Stop sends sig to the started cmd and waits for it to exit, killing it
// when it is still there after grace.
func Stop(cmd *exec.Cmd, sig os.Signal, grace time.Duration) {
	cmd.Process.Signal(sig)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		cmd.Process.Kill()
		<-done
	}
}
