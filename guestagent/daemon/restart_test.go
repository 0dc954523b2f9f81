package daemon

import (
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
)

func TestDecideRestart(t *testing.T) {
	always := container.RestartPolicy{Name: container.RestartPolicyAlways}
	unless := container.RestartPolicy{Name: container.RestartPolicyUnlessStopped}
	onFail := container.RestartPolicy{Name: container.RestartPolicyOnFailure}
	onFail2 := container.RestartPolicy{Name: container.RestartPolicyOnFailure, MaximumRetryCount: 2}
	no := container.RestartPolicy{Name: container.RestartPolicyDisabled}
	tests := []struct {
		name     string
		p        container.RestartPolicy
		code     int
		canceled bool
		manual   bool
		count    int
		want     bool
	}{
		{"no", no, 1, false, false, 0, false},
		{"always after success", always, 0, false, false, 0, true},
		{"always after manual kill", always, 0, false, true, 0, true},
		{"always after stop", always, 0, true, true, 0, false},
		{"unless-stopped", unless, 0, false, false, 0, true},
		{"unless-stopped after a manual kill", unless, 137, false, true, 0, false},
		{"on-failure success", onFail, 0, false, false, 0, false},
		{"on-failure failure", onFail, 1, false, false, 5, true},
		{"on-failure after a manual kill", onFail, 129, false, true, 0, true},
		{"on-failure:2 first", onFail2, 1, false, false, 1, true},
		{"on-failure:2 exhausted", onFail2, 1, false, false, 2, false},
		{"on-failure after stop", onFail, 1, true, false, 0, false},
	}
	for _, tt := range tests {
		got := decideRestart(tt.p, tt.code, tt.canceled, tt.manual, time.Second, tt.count, 0)
		if got.Restart != tt.want {
			t.Errorf("%s: restart = %v, want %v", tt.name, got.Restart, tt.want)
		}
	}
}

func TestRestartBackoff(t *testing.T) {
	p := container.RestartPolicy{Name: container.RestartPolicyAlways}
	var delays []time.Duration
	prev := time.Duration(0)
	for range 12 {
		d := decideRestart(p, 1, false, false, 50*time.Millisecond, 0, prev)
		delays = append(delays, d.Delay)
		prev = d.Delay
	}
	want := []time.Duration{100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 51200, 60000, 60000}
	for i := range want {
		if delays[i] != want[i]*time.Millisecond {
			t.Fatalf("delays %v", delays)
		}
	}
	// A run of 10 s or more starts over.
	if d := decideRestart(p, 1, false, false, 10*time.Second, 0, time.Minute); d.Delay != backoffInitial {
		t.Errorf("after a long run: %s", d.Delay)
	}
}

func TestRestartAtBoot(t *testing.T) {
	always := container.RestartPolicy{Name: container.RestartPolicyAlways}
	unless := container.RestartPolicy{Name: container.RestartPolicyUnlessStopped}
	onFail := container.RestartPolicy{Name: container.RestartPolicyOnFailure, MaximumRetryCount: 3}
	tests := []struct {
		name                  string
		p                     container.RestartPolicy
		startedBefore, manual bool
		code, count           int
		want                  bool
	}{
		{"never started", always, false, false, 0, 0, false},
		{"always", always, true, false, 0, 0, true},
		{"always manually stopped", always, true, true, 0, 0, true},
		{"unless-stopped", unless, true, false, 0, 0, true},
		{"unless-stopped manually stopped", unless, true, true, 0, 0, false},
		{"on-failure after failure", onFail, true, false, 1, 1, true},
		{"on-failure after success", onFail, true, false, 0, 0, false},
		{"on-failure out of retries", onFail, true, false, 1, 3, false},
		{"no policy", container.RestartPolicy{Name: "no"}, true, false, 1, 0, false},
	}
	for _, tt := range tests {
		if got := restartAtBoot(tt.p, tt.startedBefore, tt.manual, tt.code, tt.count); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}
