// Package dockerctx gives the docker CLI a context for each berth
// instance. It writes the CLI's context store itself
// ($DOCKER_CONFIG/contexts/meta/<sha256 of name>/meta.json), so it works
// whether or not the docker CLI is installed, and it can make a context
// the CLI's current one (config.json's currentContext).
//
// It touches only the contexts it is asked to write and the
// currentContext key of config.json; other contexts and every other key
// of config.json are left as they are. It knows nothing of instances
// beyond their names and socket paths.
package dockerctx

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// ConfigDir is the docker CLI's configuration directory: $DOCKER_CONFIG,
// or ~/.docker.
func ConfigDir() (string, error) {
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		return d, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("finding the docker configuration directory (set DOCKER_CONFIG): %w", err)
	}
	return filepath.Join(home, ".docker"), nil
}

// Name is the docker context of a berth instance: "berth" for the
// default instance, "berth-NAME" for the others.
func Name(instance string) string {
	if instance == "default" {
		return "berth"
	}
	return "berth-" + instance
}

// Context is a docker context that reaches one Docker API endpoint.
type Context struct {
	Name        string
	Description string
	Host        string // the endpoint: unix:///path/to/docker.sock
}

// The context store's meta.json, as the docker CLI reads it.
type meta struct {
	Name      string                  `json:"Name"`
	Metadata  metadata                `json:"Metadata"`
	Endpoints map[string]endpointMeta `json:"Endpoints"`
}

type metadata struct {
	Description string `json:",omitempty"`
}

type endpointMeta struct {
	Host          string `json:",omitempty"`
	SkipTLSVerify bool
}

// metaPath is where the CLI keeps a context's metadata: the directory is
// named by the SHA-256 of the context name.
func metaPath(dir, name string) string {
	sum := sha256.Sum256([]byte(name))
	return filepath.Join(dir, "contexts", "meta", hex.EncodeToString(sum[:]), "meta.json")
}

// Write creates or updates the context c in the configuration directory
// dir, and reports whether anything changed.
func Write(dir string, c Context) (changed bool, err error) {
	if c.Name == "" || c.Host == "" {
		return false, errors.New("writing a docker context: it needs a name and a host")
	}
	m := meta{
		Name:      c.Name,
		Metadata:  metadata{Description: c.Description},
		Endpoints: map[string]endpointMeta{"docker": {Host: c.Host}},
	}
	b, err := json.Marshal(m)
	if err != nil {
		return false, fmt.Errorf("writing docker context %q: %w", c.Name, err)
	}
	path := metaPath(dir, c.Name)
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, b) {
		return false, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return false, fmt.Errorf("writing docker context %q: %w", c.Name, err)
	}
	if err := writeAtomic(path, b, 0o644); err != nil {
		return false, fmt.Errorf("writing docker context %q: %w", c.Name, err)
	}
	return true, nil
}

// Read returns the context called name, or an error wrapping
// fs.ErrNotExist.
func Read(dir, name string) (Context, error) {
	b, err := os.ReadFile(metaPath(dir, name))
	if err != nil {
		return Context{}, fmt.Errorf("reading docker context %q: %w", name, err)
	}
	var m meta
	if err := json.Unmarshal(b, &m); err != nil {
		return Context{}, fmt.Errorf("reading docker context %q: %w", name, err)
	}
	return Context{Name: m.Name, Description: m.Metadata.Description, Host: m.Endpoints["docker"].Host}, nil
}

// Remove deletes the context called name, and clears currentContext if
// it named it (the CLI refuses to run with a current context that does
// not exist). Removing a missing context is not an error.
func Remove(dir, name string) error {
	if err := os.RemoveAll(filepath.Dir(metaPath(dir, name))); err != nil {
		return fmt.Errorf("removing docker context %q: %w", name, err)
	}
	cur, err := Current(dir)
	if err != nil || cur != name {
		return err
	}
	_, err = setCurrent(dir, "")
	return err
}

// Current is config.json's currentContext; "" means the CLI's default.
func Current(dir string) (string, error) {
	cfg, err := readConfig(dir)
	if err != nil {
		return "", err
	}
	var cur string
	if raw, ok := cfg["currentContext"]; ok {
		if err := json.Unmarshal(raw, &cur); err != nil {
			return "", fmt.Errorf("reading %s: currentContext: %w", configPath(dir), err)
		}
	}
	return cur, nil
}

// Use makes name the docker CLI's current context and returns the one it
// replaces ("" for the default). Other settings in config.json stay.
func Use(dir, name string) (previous string, err error) {
	if _, err := os.Stat(metaPath(dir, name)); err != nil {
		return "", fmt.Errorf("using docker context %q: %w", name, err)
	}
	return setCurrent(dir, name)
}

func setCurrent(dir, name string) (string, error) {
	cfg, err := readConfig(dir)
	if err != nil {
		return "", err
	}
	var prev string
	if raw, ok := cfg["currentContext"]; ok {
		json.Unmarshal(raw, &prev)
	}
	if name == "" {
		delete(cfg, "currentContext")
	} else {
		v, _ := json.Marshal(name)
		cfg["currentContext"] = v
	}
	b, err := json.MarshalIndent(cfg, "", "\t")
	if err != nil {
		return "", fmt.Errorf("writing %s: %w", configPath(dir), err)
	}
	mode := fs.FileMode(0o600)
	if st, err := os.Stat(configPath(dir)); err == nil {
		mode = st.Mode().Perm()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("writing %s: %w", configPath(dir), err)
	}
	if err := writeAtomic(configPath(dir), append(b, '\n'), mode); err != nil {
		return "", fmt.Errorf("writing %s: %w", configPath(dir), err)
	}
	return prev, nil
}

func configPath(dir string) string { return filepath.Join(dir, "config.json") }

// readConfig reads config.json as raw keys, so that writing it back keeps
// what berth does not know. A missing file is an empty config; a
// malformed one is an error, never overwritten.
func readConfig(dir string) (map[string]json.RawMessage, error) {
	b, err := os.ReadFile(configPath(dir))
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]json.RawMessage{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", configPath(dir), err)
	}
	cfg := map[string]json.RawMessage{}
	if len(bytes.TrimSpace(b)) == 0 {
		return cfg, nil
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		return nil, fmt.Errorf("reading %s: %w (fix or remove it)", configPath(dir), err)
	}
	return cfg, nil
}

// writeAtomic writes data beside path and renames it into place, so the
// CLI never reads half a file. A symlinked path (dotfile managers) is
// written through: the link's target is replaced, not the link.
func writeAtomic(path string, data []byte, mode fs.FileMode) error {
	if target, err := filepath.EvalSymlinks(path); err == nil {
		path = target
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Sync()
	}
	if err := errors.Join(werr, f.Close(), os.Chmod(tmp, mode)); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
