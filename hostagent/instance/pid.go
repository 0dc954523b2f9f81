package instance

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
)

// AgentPID returns the pid of the instance's live host agent, or 0 when
// none runs. A pidfile whose process is gone, or whose pid now belongs to
// some other program (after a host crash and reboot), is stale: it is
// removed and reported as no agent.
func (i *Instance) AgentPID() (int, error) {
	return checkPidFile(i.Path(PidFile), "hostagent", i.Name)
}

// WritePidFile records the current process as the instance's host agent. It
// fails if another live host agent holds the pidfile.
func (i *Instance) WritePidFile() error {
	path := i.Path(PidFile)
	for attempt := 0; attempt < 2; attempt++ {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			pid, cerr := i.AgentPID()
			if cerr != nil {
				return cerr
			}
			if pid != 0 {
				return fmt.Errorf("instance %q already has a host agent (pid %d)", i.Name, pid)
			}
			continue // the stale file was removed; try again
		}
		if err != nil {
			return fmt.Errorf("writing pidfile: %w", err)
		}
		_, werr := fmt.Fprintf(f, "%d\n", os.Getpid())
		return errors.Join(werr, f.Close())
	}
	return fmt.Errorf("writing pidfile %s: it keeps reappearing", path)
}

// RemovePidFile removes the pidfile if it names the current process.
func (i *Instance) RemovePidFile() {
	path := i.Path(PidFile)
	if pid, err := readPid(path); err == nil && pid == os.Getpid() {
		os.Remove(path)
	}
}

func readPid(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pidfile %s holds %q, not a pid", path, strings.TrimSpace(string(b)))
	}
	return pid, nil
}

// checkPidFile reads a pidfile and checks that its process is alive and its
// command line holds every word in want. Stale pidfiles are removed.
func checkPidFile(path string, want ...string) (int, error) {
	pid, err := readPid(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		// Garbage in the pidfile is as stale as a dead pid.
		os.Remove(path)
		return 0, nil
	}
	if !processAlive(pid) || !processMatches(pid, want) {
		os.Remove(path)
		return 0, nil
	}
	return pid, nil
}

// processMatches reports whether pid's command line holds all of want.
// Where the command line cannot be read, it trusts the pid.
func processMatches(pid int, want []string) bool {
	args, err := processArgs(pid)
	if err != nil {
		return true
	}
	for _, w := range want {
		found := false
		for _, a := range args {
			if a == w || strings.HasSuffix(a, "/"+w) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}
