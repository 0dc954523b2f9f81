package benchutil

import (
	"os"
	"path/filepath"
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
