package benchutil

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func TestMedianAndPercentile(t *testing.T) {
	ds := []time.Duration{5, 1, 4, 2, 3}
	if got := Median(ds); got != 3 {
		t.Errorf("Median = %v, want 3", got)
	}
	if got := Median([]time.Duration{4, 1, 3, 2}); got != 3 {
		t.Errorf("Median of four = %v, want 3 (the upper middle)", got)
	}
	if got := Percentile(ds, 0); got != 1 {
		t.Errorf("Percentile 0 = %v, want 1", got)
	}
	if got := Percentile(ds, 0.99); got != 4 {
		t.Errorf("Percentile 0.99 = %v, want 4 (nearest rank below)", got)
	}
	if got := Percentile(ds, 1); got != 5 {
		t.Errorf("Percentile 1 = %v, want 5", got)
	}
	if ds[0] != 5 || ds[1] != 1 {
		t.Errorf("the input was reordered: %v", ds)
	}
}

func TestRepoRoot(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("RepoRoot %s holds no go.mod: %v", root, err)
	}
	t.Chdir(t.TempDir())
	if _, err := RepoRoot(); err == nil {
		t.Error("RepoRoot outside the tree: no error")
	}
}

func TestStop(t *testing.T) {
	polite := exec.Command("sleep", "60")
	if err := polite.Start(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	Stop(polite, syscall.SIGTERM, 10*time.Second)
	if polite.ProcessState == nil || time.Since(start) > 5*time.Second {
		t.Errorf("a process that obeys the signal: state %v after %v", polite.ProcessState, time.Since(start))
	}

	deaf := exec.Command("sh", "-c", `trap "" TERM; echo ready; exec sleep 60`)
	out, err := deaf.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := deaf.Start(); err != nil {
		t.Fatal(err)
	}
	bufio.NewReader(out).ReadString('\n') // the trap is set
	Stop(deaf, syscall.SIGTERM, 200*time.Millisecond)
	if ws, ok := deaf.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Errorf("a process that ignores the signal ended with %v, want SIGKILL", deaf.ProcessState)
	}
}
