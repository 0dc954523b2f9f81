package images

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berthvm/berth/images/imagetest"
)

// checkConsistent verifies what a reopened store must guarantee: every
// image's blobs exist and hash to their digest, its snapshots exist, and
// no temporary file is left.
func checkConsistent(t testing.TB, s *Store) {
	t.Helper()
	ctx := context.Background()
	for _, img := range s.Images(ctx) {
		if _, err := s.LowerDirs(ctx, img.ID); err != nil {
			t.Errorf("image %s: %v", img.ID, err)
		}
		ds := []digest.Digest{img.Manifest.Digest, digest.Digest(img.ID)}
		for _, l := range img.Layers {
			ds = append(ds, l.Blob.Digest)
		}
		for _, d := range ds {
			f, err := s.content.Open(d)
			if err != nil {
				t.Errorf("image %s: blob %s: %v", img.ID, d, err)
				continue
			}
			got, err := digest.SHA256.FromReader(f)
			f.Close()
			if err != nil || got != d {
				t.Errorf("blob %s hashes to %s (%v)", d, got, err)
			}
		}
	}
	// Every stored blob is under its own digest.
	_ = s.content.Walk(func(d digest.Digest, _ int64) error {
		f, err := s.content.Open(d)
		if err != nil {
			return nil
		}
		defer f.Close()
		if got, _ := digest.SHA256.FromReader(f); got != d {
			t.Errorf("blob %s holds %s", d, got)
		}
		return nil
	})
	assertNoLeftovers(t, s)
}

func TestOpenCleansLeftovers(t *testing.T) {
	p := pushTestImages(t, imagetest.RegistryOptions{})
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "images")
	s := openStore(t, root)
	img, err := s.Pull(ctx, p.busybox, PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	orphanBlob := digest.FromString("orphan")
	orphanSnap := digest.FromString("orphan snapshot")
	junk := map[string]string{
		"content/ingest/i-12345":                       "half a blob",
		"content/blobs/sha256/" + orphanBlob.Encoded(): "orphan",
		"snapshots/.tmp-abc/fs/bin/half":               "x",
		"snapshots/" + orphanSnap.Encoded() + "/fs/x":  "x",
		"meta/images/.tmp-123":                         "{",
		"meta/.tmp-456":                                "{",
		"tmp/load-1/0":                                 "spooled",
	}
	for rel, body := range junk {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s = openStore(t, root)
	for rel := range junk {
		if _, err := os.Stat(filepath.Join(root, rel)); err == nil {
			t.Errorf("%s survived Open", rel)
		}
	}
	got, err := s.Resolve(ctx, p.busybox)
	if err != nil || got.ID != img.ID {
		t.Fatalf("image after reopen: %+v, %v", got, err)
	}
	checkConsistent(t, s)
	// The lock keeps a second store off the same root.
	if _, err := Open(ctx, Options{Root: root, Logger: testLogger(t)}); err == nil {
		t.Fatal("second Open of a locked root succeeded")
	}
}

// TestHelperPullChild is the child process of TestSIGKILLMidPull.
func TestHelperPullChild(t *testing.T) {
	root := os.Getenv("BERTH_CHILD_ROOT")
	if root == "" {
		t.Skip("helper process for TestSIGKILLMidPull")
	}
	s, err := Open(context.Background(), Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Pull(context.Background(), os.Getenv("BERTH_CHILD_REF"), PullOptions{})
	t.Logf("child pull ended: %v", err)
}

// slowProxy forwards to the registry, trickling blob bodies.
func slowProxy(t testing.TB, registryAddr string) string {
	u, _ := url.Parse("http://" + registryAddr)
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ModifyResponse = func(resp *http.Response) error {
		if strings.Contains(resp.Request.URL.Path, "/blobs/") {
			resp.Body = &slowBody{resp.Body}
		}
		return nil
	}
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

type slowBody struct{ io.ReadCloser }

func (b *slowBody) Read(p []byte) (int, error) {
	time.Sleep(20 * time.Millisecond)
	if len(p) > 32<<10 {
		p = p[:32<<10]
	}
	return b.ReadCloser.Read(p)
}

func TestSIGKILLMidPull(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	p := pushTestImages(t, imagetest.RegistryOptions{})
	proxy := slowProxy(t, p.reg.Addr)
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "images")
	s := openStore(t, root)
	before, err := s.Pull(ctx, p.busybox, PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	midway := 0
	for _, delay := range []time.Duration{150 * time.Millisecond, 500 * time.Millisecond, 900 * time.Millisecond, 1500 * time.Millisecond} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperPullChild$", "-test.v")
		cmd.Env = append(os.Environ(), "BERTH_CHILD_ROOT="+root, "BERTH_CHILD_REF="+proxy+"/test/layered:v1")
		out := &strings.Builder{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(delay)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		if strings.Contains(out.String(), "child pull ended: <nil>") {
			t.Logf("after %v the pull had finished", delay)
		}
		if entries, _ := os.ReadDir(filepath.Join(root, "content", "ingest")); len(entries) > 0 {
			midway++
		}
		s = openStore(t, root)
		got, err := s.Resolve(ctx, p.busybox)
		if err != nil || got.ID != before.ID {
			t.Fatalf("after kill at %v: earlier image: %+v, %v", delay, got, err)
		}
		checkConsistent(t, s)
		s.Close()
	}
	if midway == 0 {
		t.Error("no kill landed during a download")
	}
	s = openStore(t, root)
	if _, err := s.Pull(ctx, p.layered, PullOptions{}); err != nil {
		t.Fatalf("pull after the crashes: %v", err)
	}
	checkConsistent(t, s)
}
