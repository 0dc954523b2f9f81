package instance

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestValidateName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"default", true}, {"dev-2", true}, {"a.b_c", true}, {"0", true},
		{"", false}, {"Default", false}, {"-x", false}, {"a/b", false}, {"..", false},
		{strings.Repeat("a", 33), false}, {"a b", false},
	} {
		err := ValidateName(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Size
		ok   bool
	}{
		{"2GiB", 2 << 30, true}, {"2G", 2 << 30, true}, {"2gib", 2 << 30, true},
		{"512MiB", 512 << 20, true}, {"1.5GiB", 3 << 29, true}, {"1073741824", 1 << 30, true},
		{" 4 GiB ", 4 << 30, true}, {"100B", 100, true},
		{"", 0, false}, {"GiB", 0, false}, {"-1G", 0, false}, {"abc", 0, false}, {"1e30G", 0, false},
	} {
		got, err := ParseSize(tc.in)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("ParseSize(%q) = %d, %v; want %d ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
	for _, tc := range []struct {
		s    Size
		want string
	}{{2 << 30, "2GiB"}, {3 << 29, "1.5GiB"}, {512 << 20, "512MiB"}, {100, "100B"}} {
		if got := tc.s.String(); got != tc.want {
			t.Errorf("Size(%d).String() = %q, want %q", tc.s, got, tc.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*Config)
		errHas string
	}{
		{"default", func(*Config) {}, ""},
		{"zero cpus", func(c *Config) { c.CPUs = 0 }, "invalid cpus 0"},
		{"too many cpus", func(c *Config) { c.CPUs = 1000 }, "invalid cpus"},
		{"tiny memory", func(c *Config) { c.Memory = 1 << 20 }, "invalid memory"},
		{"tiny disk", func(c *Config) { c.Disk = 1 << 20 }, "invalid disk"},
		{"bad arch", func(c *Config) { c.Arch = "riscv64" }, "invalid arch"},
		{"bad driver", func(c *Config) { c.Driver = "virtualbox" }, "invalid driver"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.change(c)
			err := c.Validate()
			if tc.errHas == "" && err != nil || tc.errHas != "" && (err == nil || !strings.Contains(err.Error(), tc.errHas)) {
				t.Fatalf("Validate() = %v, want error containing %q", err, tc.errHas)
			}
		})
	}
}

func TestConfigRoundTripAndCorrupt(t *testing.T) {
	home := t.TempDir()
	inst, err := New(home, "dev")
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.CPUs, cfg.Memory = 3, 3<<30
	if err := inst.Create(cfg); err != nil {
		t.Fatal(err)
	}
	if err := inst.Create(cfg); err == nil {
		t.Fatal("creating an existing instance succeeded")
	}
	got, err := inst.LoadConfig()
	if err != nil {
		t.Fatal(err)
	}
	if got.CPUs != 3 || got.Memory != 3<<30 || got.Disk != cfg.Disk || got.Arch != cfg.Arch {
		t.Fatalf("round trip: got %+v, want %+v", got, cfg)
	}
	if st, _ := os.Stat(inst.Path(ConfigFile)); st.Mode().Perm() != 0o600 {
		t.Errorf("config mode %v, want 0600", st.Mode().Perm())
	}
	for _, bad := range []string{"cpus: [1\n", "cpus: two\n", "memory: lots\n", "cpuz: 2\n", "cpus: 0\n"} {
		os.WriteFile(inst.Path(ConfigFile), []byte(bad), 0o600)
		_, err := inst.LoadConfig()
		if err == nil || !strings.Contains(err.Error(), "is not a valid berth config") {
			t.Errorf("config %q: err = %v, want a clear config error", bad, err)
		}
	}
	// An empty file is the defaults.
	os.WriteFile(inst.Path(ConfigFile), nil, 0o600)
	if _, err := inst.LoadConfig(); err != nil {
		t.Errorf("empty config: %v", err)
	}
}

func TestLookupAndList(t *testing.T) {
	home := t.TempDir()
	if _, err := Lookup(home, "nope"); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("Lookup of a missing instance: %v", err)
	}
	if _, err := Lookup(home, "Bad/Name"); err == nil || !strings.Contains(err.Error(), "invalid instance name") {
		t.Fatalf("Lookup of a bad name: %v", err)
	}
	for _, n := range []string{"b", "a"} {
		inst, _ := New(home, n)
		if err := inst.Create(DefaultConfig()); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(filepath.Join(home, "stray"), 0o700) // no config: not an instance
	names, err := List(home)
	if err != nil || strings.Join(names, ",") != "a,b" {
		t.Fatalf("List = %v, %v; want a,b", names, err)
	}
	if _, err := Lookup(home, "a"); err != nil {
		t.Fatal(err)
	}
}

func TestPidFile(t *testing.T) {
	inst, _ := New(t.TempDir(), "p")
	os.MkdirAll(inst.Dir, 0o700)

	// No pidfile: no agent.
	if pid, err := inst.AgentPID(); pid != 0 || err != nil {
		t.Fatalf("AgentPID = %d, %v", pid, err)
	}
	// A stale pidfile from a dead process is removed.
	cmd := exec.Command("true")
	cmd.Run()
	os.WriteFile(inst.Path(PidFile), []byte(strconv.Itoa(cmd.Process.Pid)), 0o600)
	if pid, _ := inst.AgentPID(); pid != 0 {
		t.Fatalf("stale pidfile reported pid %d", pid)
	}
	if _, err := os.Stat(inst.Path(PidFile)); !os.IsNotExist(err) {
		t.Fatal("stale pidfile was not removed")
	}
	// A live pid that is not a berth host agent (pid reused after a crash)
	// is stale too.
	os.WriteFile(inst.Path(PidFile), []byte(strconv.Itoa(os.Getpid())), 0o600)
	if pid, _ := inst.AgentPID(); pid != 0 {
		t.Fatalf("pidfile naming the test binary reported pid %d", pid)
	}
	// Garbage is stale.
	os.WriteFile(inst.Path(PidFile), []byte("hello"), 0o600)
	if pid, _ := inst.AgentPID(); pid != 0 {
		t.Fatal("garbage pidfile reported a pid")
	}
	// A live host agent holds the pidfile: a sleeping process whose
	// command line looks like one.
	sleeper := exec.Command("bash", "-c", `exec -a berth bash -c "sleep 30; :" hostagent p`)
	if err := sleeper.Start(); err != nil {
		t.Skip("bash missing:", err)
	}
	defer sleeper.Process.Kill()
	for i := 0; i < 100; i++ { // wait for the exec -a to happen
		if b, _ := os.ReadFile("/proc/" + strconv.Itoa(sleeper.Process.Pid) + "/cmdline"); strings.Contains(string(b), "\x00hostagent\x00") {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	os.WriteFile(inst.Path(PidFile), []byte(strconv.Itoa(sleeper.Process.Pid)), 0o600)
	if pid, _ := inst.AgentPID(); pid != sleeper.Process.Pid {
		t.Fatalf("live agent: AgentPID = %d, want %d", pid, sleeper.Process.Pid)
	}
	if err := inst.WritePidFile(); err == nil || !strings.Contains(err.Error(), "already has a host agent") {
		t.Fatalf("WritePidFile over a live agent: %v", err)
	}
	sleeper.Process.Kill()
	sleeper.Wait()
	if err := inst.WritePidFile(); err != nil {
		t.Fatalf("WritePidFile after the agent died: %v", err)
	}
	inst.RemovePidFile()
	if _, err := os.Stat(inst.Path(PidFile)); !os.IsNotExist(err) {
		t.Fatal("RemovePidFile left the file")
	}
}
