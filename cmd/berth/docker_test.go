package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berthvm/berth/hostagent/instance"
)

func TestCLIDockerEnv(t *testing.T) {
	home := t.TempDir()
	writeInstance(t, home, "default", "cpus: 1\n")
	writeInstance(t, home, "dev", "cpus: 1\n")
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"docker-env"}, "export DOCKER_HOST=unix://" + filepath.Join(home, "default", "docker.sock") + "\n"},
		{[]string{"docker-env", "dev"}, "export DOCKER_HOST=unix://" + filepath.Join(home, "dev", "docker.sock") + "\n"},
		{[]string{"docker-env", "--unset"}, "unset DOCKER_HOST\n"},
	}
	for _, tt := range tests {
		out, code := berth(t, home, tt.args...)
		if code != 0 || !strings.HasPrefix(out, tt.want) {
			t.Errorf("berth %v: exit %d, %q; want it to start with %q", tt.args, code, out, tt.want)
		}
	}
	// What it prints is what a shell evaluates.
	out, _ := berth(t, home, "docker-env", "dev")
	sh := exec.Command("sh", "-c", out+`printf %s "$DOCKER_HOST"`)
	got, err := sh.Output()
	if err != nil || string(got) != "unix://"+filepath.Join(home, "dev", "docker.sock") {
		t.Fatalf("eval: %q %v", got, err)
	}
	if out, code := berth(t, home, "docker-env", "nope"); code != 1 || !strings.Contains(out, "does not exist") {
		t.Fatalf("docker-env of a missing instance: %d %q", code, out)
	}
}

func TestCLIPortsNotRunning(t *testing.T) {
	home := t.TempDir()
	writeInstance(t, home, "default", "cpus: 1\n")
	out, code := berth(t, home, "ports")
	if code != 1 || !strings.Contains(out, "is not running") {
		t.Fatalf("ports of a stopped instance: %d %q", code, out)
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"unix:///home/u/.berth/default/docker.sock": "unix:///home/u/.berth/default/docker.sock",
		"unix:///home/my user/docker.sock":          "'unix:///home/my user/docker.sock'",
		"it's":                                      `'it'\''s'`,
		"":                                          "''",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSetupDockerContext(t *testing.T) {
	cfg := t.TempDir()
	t.Setenv("DOCKER_CONFIG", cfg)
	t.Setenv("DOCKER_HOST", "")
	t.Setenv("DOCKER_CONTEXT", "")
	home := t.TempDir()
	dir := writeInstance(t, home, "default", "cpus: 1\n")
	inst := lookupIn(t, home, "default")
	var b strings.Builder
	setupDockerContext(&b, inst, false)
	if !strings.Contains(b.String(), "docker --context berth ps") {
		t.Fatalf("without --use-context: %q", b.String())
	}
	meta, err := filepath.Glob(filepath.Join(cfg, "contexts", "meta", "*", "meta.json"))
	if err != nil || len(meta) != 1 {
		t.Fatalf("context files: %v %v", meta, err)
	}
	if data, _ := os.ReadFile(meta[0]); !strings.Contains(string(data), "unix://"+filepath.Join(dir, "docker.sock")) {
		t.Fatalf("meta.json %s", data)
	}
	if _, err := os.Stat(filepath.Join(cfg, "config.json")); !os.IsNotExist(err) {
		t.Fatal("config.json written without --use-context")
	}
	b.Reset()
	setupDockerContext(&b, inst, true)
	if !strings.Contains(b.String(), `now uses the "berth" context (it used "default"`) {
		t.Fatalf("with --use-context: %q", b.String())
	}
	data, _ := os.ReadFile(filepath.Join(cfg, "config.json"))
	if !strings.Contains(string(data), `"currentContext": "berth"`) {
		t.Fatalf("config.json %s", data)
	}
}

func lookupIn(t *testing.T, home, name string) *instance.Instance {
	t.Helper()
	inst, err := instance.Lookup(home, name)
	if err != nil {
		t.Fatal(err)
	}
	return inst
}
