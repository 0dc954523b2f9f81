package main

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// These tests run the real berth binary against a temporary BERTH_HOME.
// None of them boots a VM; the end-to-end suite in e2e/ does.

var berthBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "berth-cli")
	if err != nil {
		panic(err)
	}
	berthBin = filepath.Join(dir, "berth")
	if out, err := exec.Command("go", "build", "-o", berthBin, ".").CombinedOutput(); err != nil {
		panic("building berth: " + err.Error() + "\n" + string(out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func berth(t *testing.T, home string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(berthBin, args...)
	// The docker CLI's config stays in the test's home too.
	cmd.Env = append(os.Environ(), "BERTH_HOME="+home, "DOCKER_CONFIG="+filepath.Join(home, ".docker"))
	out, err := cmd.CombinedOutput()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

func TestCLIErrors(t *testing.T) {
	home := t.TempDir()
	for _, tc := range []struct {
		args []string
		code int
		has  string
	}{
		{[]string{"stop", "nope"}, 1, `instance "nope": instance does not exist`},
		{[]string{"status", "nope"}, 1, "does not exist"},
		{[]string{"exec", "nope", "--", "true"}, 1, "does not exist"},
		{[]string{"delete", "nope"}, 1, "does not exist"},
		{[]string{"start", "Bad/Name"}, 2, "invalid instance name"},
		{[]string{"start", "--cpus", "0"}, 2, "invalid cpus 0"},
		{[]string{"start", "--cpus", "many"}, 2, "invalid argument"},
		{[]string{"start", "--memory", "lots"}, 2, `invalid size "lots"`},
		{[]string{"start", "--memory", "1MiB"}, 2, "invalid memory 1MiB"},
		{[]string{"start", "--disk", "10MiB"}, 2, "invalid disk"},
		{[]string{"start", "--arch", "sparc"}, 2, "invalid arch"},
		{[]string{"exec", "default"}, 2, "exec needs an instance name and a command"},
		{[]string{"status", "a", "b"}, 2, "takes at most 1 argument"},
		{[]string{"list", "--format", "xml"}, 2, "invalid --format"},
		{[]string{"frobnicate"}, 2, "unknown command"},
	} {
		out, code := berth(t, home, tc.args...)
		if code != tc.code || !strings.Contains(out, tc.has) {
			t.Errorf("berth %s: exit %d, output %q; want exit %d and %q", strings.Join(tc.args, " "), code, out, tc.code, tc.has)
		}
	}
	// None of the bad starts created an instance.
	if out, _ := berth(t, home, "list"); strings.Count(out, "\n") != 1 {
		t.Errorf("bad starts left instances behind:\n%s", out)
	}
}

func writeInstance(t *testing.T, home, name, config string) string {
	dir := filepath.Join(home, name)
	os.MkdirAll(dir, 0o700)
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestCLICorruptConfig(t *testing.T) {
	home := t.TempDir()
	writeInstance(t, home, "broken", "cpus: [2\n")
	out, code := berth(t, home, "start", "broken")
	if code != 1 || !strings.Contains(out, "is not a valid berth config") || !strings.Contains(out, "config.yaml") {
		t.Fatalf("start with a corrupt config: exit %d, %q", code, out)
	}
	out, _ = berth(t, home, "status", "broken")
	if !strings.Contains(out, "Broken") {
		t.Fatalf("status of a corrupt instance: %q", out)
	}
	// The corrupt file is left alone: nothing the user wrote is lost.
	b, _ := os.ReadFile(filepath.Join(home, "broken", "config.yaml"))
	if string(b) != "cpus: [2\n" {
		t.Fatalf("config was rewritten to %q", b)
	}
	// A broken instance can be deleted.
	if out, code := berth(t, home, "delete", "broken"); code != 0 {
		t.Fatalf("delete broken: %d %q", code, out)
	}
}

func TestCLIStalePidfileAndList(t *testing.T) {
	home := t.TempDir()
	dir := writeInstance(t, home, "dev", "cpus: 2\nmemory: 1GiB\n")
	// A pidfile left by a host crash: the pid is dead.
	dead := exec.Command("true")
	dead.Run()
	os.WriteFile(filepath.Join(dir, "hostagent.pid"), []byte(strconv.Itoa(dead.Process.Pid)), 0o600)
	out, code := berth(t, home, "status", "dev", "--format", "json")
	if code != 0 {
		t.Fatalf("status: %d %q", code, out)
	}
	var st struct {
		Name, State string
		CPUs        int
		Memory      string
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status json %q: %v", out, err)
	}
	if st.State != "Stopped" || st.CPUs != 2 || st.Memory != "1GiB" {
		t.Fatalf("status %+v", st)
	}
	if _, err := os.Stat(filepath.Join(dir, "hostagent.pid")); !os.IsNotExist(err) {
		t.Fatal("stale pidfile not removed")
	}
	out, _ = berth(t, home, "list")
	if !strings.Contains(out, "dev") || !strings.Contains(out, "Stopped") {
		t.Fatalf("list: %q", out)
	}
	out, code = berth(t, home, "stop", "dev")
	if code != 0 || !strings.Contains(out, "is not running") {
		t.Fatalf("stop of a stopped instance: %d %q", code, out)
	}
	out, code = berth(t, home, "exec", "dev", "--", "true")
	if code != 1 || !strings.Contains(out, "is not running") {
		t.Fatalf("exec on a stopped instance: %d %q", code, out)
	}
	// Changing settings of a stopped instance; shrinking the disk is refused.
	if out, code := berth(t, home, "start", "dev", "--disk", "2GiB"); code != 2 || !strings.Contains(out, "never shrink") {
		t.Fatalf("shrinking the disk: %d %q", code, out)
	}
	if out, code := berth(t, home, "start", "dev", "--arch", "aarch64"); runtimeArch() != "aarch64" && (code != 2 || !strings.Contains(out, "create another instance")) {
		t.Fatalf("changing the arch: %d %q", code, out)
	}
}

func TestCLIVersionAndHelp(t *testing.T) {
	out, code := berth(t, t.TempDir(), "version")
	if code != 0 || !strings.HasPrefix(out, "berth ") {
		t.Fatalf("version: %d %q", code, out)
	}
	out, code = berth(t, t.TempDir(), "start", "--help")
	if code != 0 || !strings.Contains(out, "--memory") || !strings.Contains(out, "reattaches") {
		t.Fatalf("start --help: %d %q", code, out)
	}
	out, code = berth(t, t.TempDir(), "completion", "bash")
	if code != 0 || !strings.Contains(out, "berth") {
		t.Fatalf("completion: %d", code)
	}
}
