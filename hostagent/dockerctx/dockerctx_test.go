package dockerctx

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestName(t *testing.T) {
	for in, want := range map[string]string{"default": "berth", "dev": "berth-dev", "a.b": "berth-a.b"} {
		if got := Name(in); got != want {
			t.Errorf("Name(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestWriteReadRemove(t *testing.T) {
	dir := t.TempDir()
	c := Context{Name: "berth", Description: "berth instance default", Host: "unix:///home/u/.berth/default/docker.sock"}
	changed, err := Write(dir, c)
	if err != nil || !changed {
		t.Fatalf("first Write: %v %v", changed, err)
	}
	b, err := os.ReadFile(metaPath(dir, "berth"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	ep := m["Endpoints"].(map[string]any)["docker"].(map[string]any)
	if m["Name"] != "berth" || ep["Host"] != c.Host || ep["SkipTLSVerify"] != false {
		t.Fatalf("meta.json = %s", b)
	}
	if changed, err := Write(dir, c); err != nil || changed {
		t.Fatalf("rewriting the same context: changed=%v %v", changed, err)
	}
	c.Host = "unix:///elsewhere/docker.sock"
	if changed, err := Write(dir, c); err != nil || !changed {
		t.Fatalf("updating: changed=%v %v", changed, err)
	}
	got, err := Read(dir, "berth")
	if err != nil || got != c {
		t.Fatalf("Read = %+v %v, want %+v", got, err, c)
	}
	// Another context is never touched.
	other := Context{Name: "colleague", Host: "tcp://10.0.0.1:2376"}
	if _, err := Write(dir, other); err != nil {
		t.Fatal(err)
	}
	if _, err := Use(dir, "berth"); err != nil {
		t.Fatal(err)
	}
	if err := Remove(dir, "berth"); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(dir, "berth"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("after Remove: %v", err)
	}
	if cur, _ := Current(dir); cur != "" {
		t.Fatalf("current context %q after removing it", cur)
	}
	if got, err := Read(dir, "colleague"); err != nil || got.Host != other.Host {
		t.Fatalf("the other context: %+v %v", got, err)
	}
	if err := Remove(dir, "berth"); err != nil {
		t.Fatalf("removing a missing context: %v", err)
	}
}

func TestMetaPathIsSHA256OfName(t *testing.T) {
	got := filepath.Base(filepath.Dir(metaPath("/d", "berth")))
	out, err := exec.Command("sh", "-c", "printf berth | sha256sum").Output()
	if err != nil {
		t.Skip("sha256sum:", err)
	}
	if exp := strings.Fields(string(out))[0]; got != exp {
		t.Fatalf("meta dir %s, want %s", got, exp)
	}
}

func TestUseKeepsOtherKeys(t *testing.T) {
	tests := []struct {
		name     string
		existing string // "" means no config.json
		mode     os.FileMode
		prev     string
	}{
		{"no config", "", 0o600, ""},
		{"empty file", "  \n", 0o600, ""},
		{"auths and another context", `{"auths":{"registry.example":{"auth":"eHg6eXk="}},"currentContext":"desktop-linux","credsStore":"pass","x-unknown":[1,2]}`, 0o640, "desktop-linux"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.existing != "" {
				if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(tt.existing), tt.mode); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := Use(dir, "berth"); err == nil {
				t.Fatal("Use of a context that does not exist succeeded")
			}
			Write(dir, Context{Name: "berth", Host: "unix:///x.sock"})
			prev, err := Use(dir, "berth")
			if err != nil || prev != tt.prev {
				t.Fatalf("Use = %q %v, want previous %q", prev, err, tt.prev)
			}
			if cur, err := Current(dir); err != nil || cur != "berth" {
				t.Fatalf("Current = %q %v", cur, err)
			}
			b, _ := os.ReadFile(filepath.Join(dir, "config.json"))
			var after map[string]json.RawMessage
			if err := json.Unmarshal(b, &after); err != nil {
				t.Fatal(err)
			}
			var before map[string]json.RawMessage
			json.Unmarshal([]byte(tt.existing), &before)
			for k, v := range before {
				if k == "currentContext" {
					continue
				}
				if string(after[k]) != string(v) && !jsonEqual(after[k], v) {
					t.Errorf("key %q changed: %s -> %s", k, v, after[k])
				}
			}
			if st, _ := os.Stat(filepath.Join(dir, "config.json")); st.Mode().Perm() != tt.mode {
				t.Errorf("mode %v, want %v", st.Mode().Perm(), tt.mode)
			}
		})
	}
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	json.Unmarshal(a, &x)
	json.Unmarshal(b, &y)
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return string(xb) == string(yb)
}

func TestMalformedConfigIsNotClobbered(t *testing.T) {
	dir := t.TempDir()
	bad := []byte(`{"auths": {`)
	os.WriteFile(filepath.Join(dir, "config.json"), bad, 0o600)
	Write(dir, Context{Name: "berth", Host: "unix:///x.sock"})
	if _, err := Use(dir, "berth"); err == nil || !strings.Contains(err.Error(), "fix or remove it") {
		t.Fatalf("Use with a malformed config.json: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "config.json")); string(b) != string(bad) {
		t.Fatalf("config.json was rewritten: %q", b)
	}
}

// TestDockerCLIReadsIt checks the files against the real docker CLI when
// it is installed.
func TestDockerCLIReadsIt(t *testing.T) {
	docker, err := exec.LookPath("docker")
	if err != nil {
		t.Skip("no docker CLI")
	}
	dir := t.TempDir()
	Write(dir, Context{Name: "berth", Description: "berth instance default", Host: "unix:///tmp/berth-test/docker.sock"})
	Use(dir, "berth")
	cmd := exec.Command(docker, "context", "inspect", "--format", "{{.Name}} {{.Endpoints.docker.Host}}", "berth")
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+dir, "DOCKER_HOST=", "DOCKER_CONTEXT=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("docker context inspect: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != "berth unix:///tmp/berth-test/docker.sock" {
		t.Fatalf("docker reads %q", got)
	}
	cmd = exec.Command(docker, "context", "ls", "--format", "{{.Name}} {{.Current}}")
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+dir, "DOCKER_HOST=", "DOCKER_CONTEXT=")
	out, err = cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("docker context ls: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "berth true") {
		t.Fatalf("docker context ls:\n%s", out)
	}
}
