// Package imagetest gives tests real images and a real registry, with no
// network beyond loopback: it starts Debian's docker-registry on 127.0.0.1
// (optionally with htpasswd basic auth, optionally on the loopback of a
// network namespace the test made, such as an engine's) and builds images from the host's
// busybox-static (and the arm64 one from Debian's package, cached under
// out/cache) with several layers, whiteouts, an opaque directory, a full
// image config and a multi-arch index.
//
// It is for tests of the image store and of the engine and Docker API
// built on it. It owns no production code path.
package imagetest

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/crypto/bcrypt"
)

// RegistryBinary is Debian's docker-registry (distribution 2.8).
const RegistryBinary = "/usr/bin/docker-registry"

// Registry is a running docker-registry on 127.0.0.1.
type Registry struct {
	// Addr is "127.0.0.1:PORT", the registry part of references.
	Addr string
	// Username and Password are set when the registry requires them.
	Username, Password string
	// Dir holds its storage.
	Dir string
	// NetNS is the network namespace it runs in ("" for the test's).
	NetNS string

	transport http.RoundTripper
}

// RegistryOptions tunes StartRegistry.
type RegistryOptions struct {
	// BasicAuth requires htpasswd basic auth; Username and Password
	// default to "berth" and a random password.
	BasicAuth          bool
	Username, Password string
	// NetNS, when set, is the path of a network namespace (such as
	// /run/netns/NAME) to run the registry in, so that its 127.0.0.1
	// is that namespace's loopback: an engine confined there reaches
	// it. Push, PushIndex and Transport then dial into the namespace.
	// Linux only.
	NetNS string
}

// StartRegistry starts a registry with its own storage, waits until it
// answers and stops it when the test ends. It skips the test when the
// binary is missing.
func StartRegistry(t testing.TB, opts RegistryOptions) *Registry {
	t.Helper()
	if _, err := os.Stat(RegistryBinary); err != nil {
		t.Skipf("%s not installed (apt-get install docker-registry): %v", RegistryBinary, err)
	}
	dir := t.TempDir()
	r := &Registry{Dir: dir, NetNS: opts.NetNS}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // loopback only, whatever the environment says
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		return dialIn(ctx, opts.NetNS, network, addr)
	}
	r.transport = tr
	authCfg := ""
	if opts.BasicAuth {
		r.Username, r.Password = opts.Username, opts.Password
		if r.Username == "" {
			r.Username = "berth"
		}
		if r.Password == "" {
			r.Password = randomHex(8)
		}
		hash, err := bcrypt.GenerateFromPassword([]byte(r.Password), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		htpasswd := filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(htpasswd, []byte(r.Username+":"+string(hash)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		authCfg = fmt.Sprintf("auth:\n  htpasswd:\n    realm: berth-test\n    path: %s\n", htpasswd)
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		r.Addr = fmt.Sprintf("127.0.0.1:%d", port)
		cfg := fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %s
  secret: %s
%s`, filepath.Join(dir, "storage"), r.Addr, randomHex(16), authCfg)
		cfgPath := filepath.Join(dir, "config.yml")
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		logf, err := os.Create(filepath.Join(dir, fmt.Sprintf("registry-%d.log", attempt)))
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(RegistryBinary, "serve", cfgPath)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := startIn(cmd, opts.NetNS); err != nil {
			logf.Close()
			t.Fatalf("starting registry: %v", err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait(); logf.Close() }()
		if err := waitReady(r.Addr, r.transport, exited); err != nil {
			_ = cmd.Process.Kill()
			<-exited
			log, _ := os.ReadFile(logf.Name())
			lastErr = fmt.Errorf("%w\n%s", err, log)
			continue
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			<-exited
		})
		return r
	}
	t.Fatalf("registry did not start: %v", lastErr)
	return nil
}

func waitReady(addr string, tr http.RoundTripper, exited <-chan error) error {
	deadline := time.Now().Add(20 * time.Second)
	client := &http.Client{Timeout: time.Second, Transport: tr}
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("registry exited: %v", err)
		default:
		}
		resp, err := client.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("registry on %s did not answer", addr)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Ref returns the reference of repoTag ("repo:tag") in this registry.
func (r *Registry) Ref(repoTag string) string { return r.Addr + "/" + repoTag }

// Auth returns the registry's credentials (anonymous without auth).
func (r *Registry) Auth() authn.Authenticator {
	if r.Username == "" {
		return authn.Anonymous
	}
	return &authn.Basic{Username: r.Username, Password: r.Password}
}

// Transport reaches the registry, through its network namespace when it
// has one; remote.WithTransport takes it.
func (r *Registry) Transport() http.RoundTripper { return r.transport }

func (r *Registry) options() []remote.Option {
	return []remote.Option{remote.WithAuth(r.Auth()), remote.WithContext(context.Background()), remote.WithTransport(r.transport)}
}

// Push pushes img as ref (see Ref) and returns its manifest digest.
func (r *Registry) Push(t testing.TB, ref string, img v1.Image) v1.Hash {
	t.Helper()
	nref, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(nref, img, r.options()...); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// PushIndex pushes a multi-arch index as ref and returns its digest.
func (r *Registry) PushIndex(t testing.TB, ref string, idx v1.ImageIndex) v1.Hash {
	t.Helper()
	nref, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(nref, idx, r.options()...); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// BusyboxBinary returns a static busybox for arch ("amd64" or "arm64"):
// the host's /bin/busybox for the host arch, or the one in Debian's
// busybox-static package cached in out/cache. It skips the test when
// neither is there.
func BusyboxBinary(t testing.TB, arch string) []byte {
	t.Helper()
	if arch == hostArch() {
		for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
			if b, err := os.ReadFile(p); err == nil && isStatic(p) {
				return b
			}
		}
		t.Skip("busybox-static is not installed (apt-get install busybox-static)")
	}
	dir := CacheDir()
	debs, _ := filepath.Glob(filepath.Join(dir, "busybox-static_*_"+arch+".deb"))
	if len(debs) == 0 {
		t.Skipf("no busybox-static for %s in %s; fetch it with: mkdir -p %s && cd %s && apt-get download busybox-static:%s", arch, dir, dir, dir, arch)
	}
	out, err := exec.Command("dpkg-deb", "--fsys-tarfile", debs[0]).Output()
	if err != nil {
		t.Skipf("extracting %s: %v", debs[0], err)
	}
	tr := tar.NewReader(bytes.NewReader(out))
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("no bin/busybox in %s: %v", debs[0], err)
		}
		if strings.TrimPrefix(h.Name, "./") == "bin/busybox" {
			var buf bytes.Buffer
			if _, err := buf.ReadFrom(tr); err != nil {
				t.Fatal(err)
			}
			return buf.Bytes()
		}
	}
}

func isStatic(p string) bool {
	out, err := exec.Command("file", "-L", p).Output()
	if err != nil {
		return true // no file(1): trust the package name
	}
	return strings.Contains(string(out), "statically linked") || strings.Contains(string(out), "static-pie")
}

// CacheDir is where downloaded test inputs live: $BERTH_TEST_CACHE, or
// out/cache in the module root.
func CacheDir() string {
	if d := os.Getenv("BERTH_TEST_CACHE"); d != "" {
		return d
	}
	dir, err := os.Getwd()
	if err != nil {
		return filepath.Join("out", "cache")
	}
	for d := dir; ; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && strings.Contains(string(b), "module github.com/berthvm/berth") {
			return filepath.Join(d, "out", "cache")
		}
		if filepath.Dir(d) == d {
			return filepath.Join(dir, "out", "cache")
		}
	}
}

// Applets lists busybox's applets, from the host busybox (the arm64 one
// cannot run here; both come from the same Debian version).
func Applets(t testing.TB) []string {
	t.Helper()
	out, err := exec.Command("busybox", "--list").Output()
	if err != nil {
		return []string{"sh", "ls", "cat", "echo", "true", "false", "sleep", "env", "id", "touch", "rm", "mkdir", "wc", "test"}
	}
	var applets []string
	for _, a := range strings.Fields(string(out)) {
		if a != "busybox" && !strings.ContainsAny(a, "/[") {
			applets = append(applets, a)
		}
	}
	return applets
}
