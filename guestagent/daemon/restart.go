package daemon

import (
	"time"

	"github.com/moby/moby/api/types/container"
)

// Restart backoff, as dockerd's restart manager: the delay before a
// restart starts at 100 ms and doubles up to a minute; a run of 10 s or
// more resets it.
const (
	backoffInitial = 100 * time.Millisecond
	backoffMax     = time.Minute
	backoffReset   = 10 * time.Second
)

// restartDecision is what a restart policy says after an exit.
type restartDecision struct {
	Restart bool
	Delay   time.Duration // wait this long, then start again
}

// decideRestart applies policy p to an exit: exitCode after running for
// ran. canceled is dockerd's ExitOnNext: the user stopped, restarted or
// killed the container with its stop signal, and no policy applies;
// manual (HasBeenManuallyStopped) matters to unless-stopped only. count
// is the restarts so far (for on-failure's maximum); prev is the
// previous delay (0 at first). A run long enough resets the backoff.
func decideRestart(p container.RestartPolicy, exitCode int, canceled, manual bool, ran time.Duration, count int, prev time.Duration) restartDecision {
	delay := prev
	switch {
	case ran >= backoffReset || delay == 0:
		delay = backoffInitial
	default:
		delay *= 2
	}
	delay = min(delay, backoffMax)
	restart := false
	if !canceled {
		switch p.Name {
		case container.RestartPolicyAlways:
			restart = true
		case container.RestartPolicyUnlessStopped:
			restart = !manual
		case container.RestartPolicyOnFailure:
			restart = exitCode != 0 && (p.MaximumRetryCount == 0 || count < p.MaximumRetryCount)
		}
	}
	return restartDecision{Restart: restart, Delay: delay}
}

// restartAtBoot says whether a stopped container comes back when the
// engine starts, as dockerd decides it: only containers that ran before;
// "always" even after a manual stop, "unless-stopped" unless stopped by
// the user, "on-failure" after a failure with retries left.
func restartAtBoot(p container.RestartPolicy, startedBefore, manual bool, exitCode, count int) bool {
	if !startedBefore {
		return false
	}
	switch p.Name {
	case container.RestartPolicyAlways:
		return true
	case container.RestartPolicyUnlessStopped:
		return !manual
	case container.RestartPolicyOnFailure:
		return !manual && exitCode != 0 && (p.MaximumRetryCount == 0 || count < p.MaximumRetryCount)
	}
	return false
}
