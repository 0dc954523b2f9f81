package api

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestGeneratedUpToDate regenerates the Go code from agent.proto into a
// temporary directory, with the same command line as the go:generate
// directive, and compares it byte for byte with the committed files.
func TestGeneratedUpToDate(t *testing.T) {
	protoc, err := exec.LookPath("protoc")
	if err != nil {
		t.Skip("protoc not found (apt-get install protobuf-compiler); cannot check generated code")
	}
	plugins := map[string]string{}
	for _, name := range []string{"protoc-gen-go", "protoc-gen-go-grpc"} {
		p, err := findPlugin(name)
		if err != nil {
			t.Skipf("%s not found in $(go env GOPATH)/bin or PATH (go install it); cannot check generated code", name)
		}
		plugins[name] = p
	}

	out := t.TempDir()
	cmd := exec.Command(protoc,
		"-I", "../..",
		"--plugin=protoc-gen-go="+plugins["protoc-gen-go"],
		"--plugin=protoc-gen-go-grpc="+plugins["protoc-gen-go-grpc"],
		"--go_out="+out, "--go_opt=paths=source_relative",
		"--go-grpc_out="+out, "--go-grpc_opt=paths=source_relative",
		"guestagent/api/agent.proto")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("running protoc: %v\n%s", err, b)
	}

	for _, name := range []string{"agent.pb.go", "agent_grpc.pb.go"} {
		fresh, err := os.ReadFile(filepath.Join(out, "guestagent", "api", name))
		if err != nil {
			t.Fatalf("reading regenerated %s: %v", name, err)
		}
		committed, err := os.ReadFile(name)
		if err != nil {
			t.Fatalf("reading committed %s: %v", name, err)
		}
		if !bytes.Equal(fresh, committed) {
			t.Errorf("%s is stale or was generated with other tool versions (%s); run `make generate` (go generate ./guestagent/api/) and commit the result",
				name, versionLine(fresh))
		}
	}
}

func findPlugin(name string) (string, error) {
	if gopath, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		for _, dir := range filepath.SplitList(strings.TrimSpace(string(gopath))) {
			p := filepath.Join(dir, "bin", name)
			if st, err := os.Stat(p); err == nil && !st.IsDir() {
				return p, nil
			}
		}
	}
	return exec.LookPath(name)
}

// versionLine pulls the tool versions out of a generated header, so a
// mismatch caused by other plugin versions is obvious from the failure.
func versionLine(src []byte) string {
	var vs []string
	for _, l := range strings.Split(string(src), "\n") {
		if strings.Contains(l, "protoc") && (strings.HasPrefix(l, "// \t") || strings.HasPrefix(l, "// - ")) {
			vs = append(vs, strings.TrimSpace(strings.TrimLeft(l, "/ \t-")))
		}
		if strings.HasPrefix(l, "package ") {
			break
		}
	}
	return "fresh run used " + strings.Join(vs, ", ")
}
