package images

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/api/types/registry"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthvm/berth/images/imagetest"
)

func hostArch() string { return runtime.GOARCH }

func TestPullByTagAndDigest(t *testing.T) {
	p := pushTestImages(t, imagetest.RegistryOptions{})
	s := newStore(t)
	ctx := context.Background()
	rec := &recorder{}
	img, err := s.Pull(ctx, p.layered, PullOptions{Progress: rec.fn})
	if err != nil {
		t.Fatal(err)
	}
	if len(img.Layers) != 3 {
		t.Fatalf("layers = %d, want 3", len(img.Layers))
	}
	if want := []string{p.layered}; !slices.Equal(img.RepoTags, want) {
		t.Errorf("RepoTags = %v, want %v", img.RepoTags, want)
	}
	wantDigest := p.reg.Addr + "/test/layered@" + p.layeredD
	if !slices.Equal(img.RepoDigests, []string{wantDigest}) {
		t.Errorf("RepoDigests = %v, want %v", img.RepoDigests, wantDigest)
	}
	for _, want := range []string{
		"v1: Pulling from test/layered",
		"Pulling fs layer", "Downloading", "Verifying Checksum", "Download complete", "Extracting", "Pull complete",
		"Digest: " + p.layeredD,
		"Status: Downloaded newer image for " + p.layered,
	} {
		if !rec.has(t, want) {
			t.Errorf("progress lacks %q: %q", want, rec.statuses())
		}
	}
	if n := rec.count("Pull complete"); n != 3 {
		t.Errorf("%d Pull complete lines, want 3", n)
	}
	// Every per-layer line carries progressDetail, which the CLI needs.
	for _, m := range rec.msgs {
		if m.ID != "" && m.ID != "v1" && m.Progress == nil {
			t.Errorf("message %+v has no progressDetail", m)
		}
	}
	if got, ok := readLayerFile(t, s, p.layered, "usr/local/bin/greet"); !ok || !strings.Contains(got, "GREETING") {
		t.Errorf("greet = %q, %v", got, ok)
	}

	// Again: up to date, nothing fetched.
	rec2 := &recorder{}
	if _, err := s.Pull(ctx, p.layered, PullOptions{Progress: rec2.fn}); err != nil {
		t.Fatal(err)
	}
	if !rec2.has(t, "Status: Image is up to date for "+p.layered) || rec2.count("Downloading") != 0 {
		t.Errorf("second pull: %q", rec2.statuses())
	}

	// By digest, into a fresh store.
	s2 := newStore(t)
	byDigest := p.reg.Addr + "/test/layered@" + p.layeredD
	img2, err := s2.Pull(ctx, byDigest, PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if img2.ID != img.ID || len(img2.RepoTags) != 0 || !slices.Equal(img2.RepoDigests, []string{byDigest}) {
		t.Errorf("by digest: %+v", img2)
	}
	if _, err := s2.Resolve(ctx, byDigest); err != nil {
		t.Errorf("Resolve by digest: %v", err)
	}

	// Unknown tag and repository: not found.
	for _, ref := range []string{p.reg.Ref("test/layered:nope"), p.reg.Ref("test/nothere:v1")} {
		if _, err := s.Pull(ctx, ref, PullOptions{}); !errors.Is(err, ErrNotFound) {
			t.Errorf("pull %s: %v, want ErrNotFound", ref, err)
		}
	}
	if _, err := s.Pull(ctx, "Bad:Ref", PullOptions{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad ref: %v, want ErrInvalid", err)
	}
}

func TestInspectAndHistory(t *testing.T) {
	p := pushTestImages(t, imagetest.RegistryOptions{})
	s := newStore(t)
	ctx := context.Background()
	img, err := s.Pull(ctx, p.layered, PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	insp, err := s.Inspect(ctx, p.layered)
	if err != nil {
		t.Fatal(err)
	}
	c := insp.Config
	if insp.ID != img.ID || insp.Os != "linux" || insp.Architecture != hostArch() || insp.Size != img.Size || insp.Size == 0 {
		t.Errorf("inspect: %+v", insp)
	}
	if !slices.Equal(c.Entrypoint, []string{"/usr/local/bin/entry.sh"}) || !slices.Equal(c.Cmd, []string{"sh"}) ||
		c.WorkingDir != "/data" || c.User != "1000:1000" || c.Labels["org.berth.test"] != "layered" ||
		!slices.Contains(c.Env, "GREETING=hello") {
		t.Errorf("config: %+v", c)
	}
	if _, ok := c.ExposedPorts["8080/tcp"]; !ok {
		t.Errorf("ExposedPorts = %v", c.ExposedPorts)
	}
	if insp.RootFS.Type != "layers" || len(insp.RootFS.Layers) != 3 || insp.Author != "berth tests" || insp.Comment != "last" {
		t.Errorf("rootfs/author/comment: %+v", insp)
	}
	if insp.Created != imagetest.Created().Format("2006-01-02T15:04:05Z") {
		t.Errorf("Created = %q", insp.Created)
	}
	if insp.GraphDriver == nil || insp.GraphDriver.Data["UpperDir"] == "" {
		t.Errorf("GraphDriver = %+v", insp.GraphDriver)
	}

	hist, err := s.History(ctx, img.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 4 {
		t.Fatalf("history has %d entries, want 4", len(hist))
	}
	if hist[0].ID != img.ID || !slices.Equal(hist[0].Tags, []string{p.layered}) || hist[0].Comment != "last" || hist[0].Size != img.Layers[2].Size {
		t.Errorf("history[0] = %+v", hist[0])
	}
	if hist[1].CreatedBy != "ENV GREETING=hello" || hist[1].Size != 0 || hist[1].ID != "<missing>" {
		t.Errorf("history[1] = %+v", hist[1])
	}
	if hist[3].Size != img.Layers[0].Size || hist[3].Created != imagetest.Created().Unix() {
		t.Errorf("history[3] = %+v", hist[3])
	}
	cfg, err := s.Config(ctx, img.ID)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Config.Cmd[0] = "changed" // a copy: must not change the store's
	insp2, _ := s.Inspect(ctx, img.ID)
	if insp2.Config.Cmd[0] != "sh" {
		t.Error("Config returned the store's own config, not a copy")
	}
}

func TestPullMultiArch(t *testing.T) {
	p := pushTestImages(t, imagetest.RegistryOptions{})
	ctx := context.Background()
	tests := []struct {
		platform *ocispec.Platform
		arch     string
		machine  elf.Machine
		wantErr  error
	}{
		{platform: nil, arch: hostArch()},
		{platform: &ocispec.Platform{OS: "linux", Architecture: "amd64"}, arch: "amd64", machine: elf.EM_X86_64},
		{platform: &ocispec.Platform{OS: "linux", Architecture: "arm64"}, arch: "arm64", machine: elf.EM_AARCH64},
		{platform: &ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}, arch: "arm64", machine: elf.EM_AARCH64},
		{platform: &ocispec.Platform{OS: "linux", Architecture: "s390x"}, wantErr: ErrNotFound},
		{platform: &ocispec.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}, wantErr: ErrNotFound},
	}
	for _, tt := range tests {
		name := "default"
		if tt.platform != nil {
			name = platformString(*tt.platform)
		}
		t.Run(name, func(t *testing.T) {
			s := newStore(t)
			rec := &recorder{}
			img, err := s.Pull(ctx, p.multi, PullOptions{Platform: tt.platform, Progress: rec.fn})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if len(s.Images(ctx)) != 0 {
					t.Fatal("image stored after a failed pull")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if img.Platform.Architecture != tt.arch {
				t.Fatalf("platform = %+v, want %s", img.Platform, tt.arch)
			}
			if got, _ := readLayerFile(t, s, p.multi, "etc/arch"); got != tt.arch+"\n" {
				t.Fatalf("/etc/arch = %q, want %s", got, tt.arch)
			}
			if tt.machine != 0 {
				lowers, _ := s.LowerDirs(ctx, img.ID)
				f, err := elf.Open(filepath.Join(lowers[0], "bin/busybox"))
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				if f.Machine != tt.machine {
					t.Fatalf("busybox is for %v, want %v", f.Machine, tt.machine)
				}
			}
			// The tag's digest is the index's, as dockerd records it.
			if !rec.has(t, "Digest: "+p.multiD) || !slices.Contains(img.RepoDigests, p.reg.Addr+"/test/multi@"+p.multiD) {
				t.Fatalf("digest: %q %v", rec.statuses(), img.RepoDigests)
			}
		})
	}
}

func TestSelectPlatform(t *testing.T) {
	mk := func(arch, variant string) ocispec.Descriptor {
		return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString(arch + variant), Platform: &ocispec.Platform{OS: "linux", Architecture: arch, Variant: variant}}
	}
	idx := ocispec.Index{Manifests: []ocispec.Descriptor{
		{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("att"), Platform: &ocispec.Platform{OS: "unknown", Architecture: "unknown"}},
		mk("amd64", ""), mk("arm", "v6"), mk("arm", "v7"), mk("arm64", ""), mk("arm64", "v8"),
	}}
	tests := []struct {
		want    ocispec.Platform
		expect  digest.Digest
		wantErr bool
	}{
		{want: ocispec.Platform{OS: "linux", Architecture: "amd64"}, expect: digest.FromString("amd64")},
		{want: ocispec.Platform{OS: "linux", Architecture: "x86_64"}, expect: digest.FromString("amd64")},
		{want: ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}, expect: digest.FromString("arm64v8")},
		{want: ocispec.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}, expect: digest.FromString("armv7")},
		{want: ocispec.Platform{OS: "linux", Architecture: "riscv64"}, wantErr: true},
		{want: ocispec.Platform{OS: "windows", Architecture: "amd64"}, wantErr: true},
	}
	for _, tt := range tests {
		got, err := selectPlatform(idx, normalizePlatform(tt.want))
		if tt.wantErr {
			if err == nil {
				t.Errorf("%v: got %s, want error", tt.want, got.Digest)
			}
			continue
		}
		if err != nil || got.Digest != tt.expect {
			t.Errorf("%v: got %s, %v; want %s", tt.want, got.Digest, err, tt.expect)
		}
	}
}

// corruptingProxy forwards to the registry but flips a byte in the body of
// blob responses for target.
func corruptingProxy(t testing.TB, registryAddr string, target string) string {
	u, _ := url.Parse("http://" + registryAddr)
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ModifyResponse = func(resp *http.Response) error {
		if !strings.HasSuffix(resp.Request.URL.Path, "/blobs/"+target) || resp.StatusCode != http.StatusOK {
			return nil
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if len(b) > 100 {
			b[100] ^= 0xff
		}
		resp.Body = io.NopCloser(bytes.NewReader(b))
		return nil
	}
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func TestPullRefusesCorruptBlob(t *testing.T) {
	reg := imagetest.StartRegistry(t, imagetest.RegistryOptions{})
	img := imagetest.Busybox(t, hostArch())
	reg.Push(t, reg.Ref("test/bb:1"), img)
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	proxy := corruptingProxy(t, reg.Addr, ld.String())

	s := newStore(t)
	ctx := context.Background()
	_, err := s.Pull(ctx, proxy+"/test/bb:1", PullOptions{})
	if err == nil {
		t.Fatal("pull of a corrupted blob succeeded")
	}
	t.Logf("corrupted blob: %v", err)
	if s.content.Has(digest.Digest(ld.String())) {
		t.Fatal("corrupted blob stored under its digest")
	}
	if len(s.Images(ctx)) != 0 {
		t.Fatal("image recorded")
	}
	assertNoLeftovers(t, s)
	// The same store pulls fine from the real registry afterwards.
	if _, err := s.Pull(ctx, reg.Ref("test/bb:1"), PullOptions{}); err != nil {
		t.Fatalf("clean pull after a failed one: %v", err)
	}
}

func TestPullRefusesWrongDiffID(t *testing.T) {
	reg := imagetest.StartRegistry(t, imagetest.RegistryOptions{})
	img := imagetest.Busybox(t, hostArch())
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.RootFS.DiffIDs[0] = v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}
	bad, err := mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	reg.Push(t, reg.Ref("test/bad:1"), bad)
	s := newStore(t)
	ctx := context.Background()
	if _, err := s.Pull(ctx, reg.Ref("test/bad:1"), PullOptions{}); err == nil || !strings.Contains(err.Error(), "diff ID") {
		t.Fatalf("err = %v, want a diff ID mismatch", err)
	}
	if keys, _ := s.snapshots.List(); len(keys) != 0 {
		t.Fatalf("snapshots kept: %v", keys)
	}
	assertNoLeftovers(t, s)
}

// assertNoLeftovers checks nothing half-done is left in the store dirs.
func assertNoLeftovers(t testing.TB, s *Store) {
	t.Helper()
	for _, dir := range []string{filepath.Join(s.root, "content", "ingest"), filepath.Join(s.root, tmpDir)} {
		entries, _ := os.ReadDir(dir)
		if len(entries) != 0 {
			t.Errorf("%s not empty: %v", dir, entries)
		}
	}
	entries, _ := os.ReadDir(s.snapshots.Root())
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			t.Errorf("snapshot temp dir left: %s", e.Name())
		}
	}
}

func TestPullBasicAuth(t *testing.T) {
	p := pushTestImages(t, imagetest.RegistryOptions{BasicAuth: true})
	ctx := context.Background()
	header := func(user, pass string) string {
		h, err := EncodeRegistryAuth(registry.AuthConfig{Username: user, Password: pass, ServerAddress: p.reg.Addr})
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	tests := []struct {
		name    string
		header  string
		wantErr error
	}{
		{name: "anonymous", header: "", wantErr: ErrUnauthorized},
		{name: "wrong password", header: header(p.reg.Username, "wrong"), wantErr: ErrUnauthorized},
		{name: "unknown user", header: header("nobody", p.reg.Password), wantErr: ErrUnauthorized},
		{name: "right", header: header(p.reg.Username, p.reg.Password)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := DecodeRegistryAuth(tt.header)
			if err != nil {
				t.Fatal(err)
			}
			s := newStore(t)
			_, err = s.Pull(ctx, p.busybox, PullOptions{Auth: Authenticator(cfg)})
			if tt.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			t.Logf("%s: %v", tt.name, err)
			if !strings.Contains(err.Error(), "access denied") {
				t.Fatalf("error %q does not say access denied", err)
			}
		})
	}
}

func TestLayerSharing(t *testing.T) {
	reg := imagetest.StartRegistry(t, imagetest.RegistryOptions{})
	base := imagetest.Busybox(t, hostArch())
	// An uncompressed layer on top.
	child, err := mutate.AppendLayers(base, imagetest.PlainLayer(imagetest.Tar(t, imagetest.File{Name: "child", Body: "c"})))
	if err != nil {
		t.Fatal(err)
	}
	reg.Push(t, reg.Ref("test/base:1"), base)
	reg.Push(t, reg.Ref("test/child:1"), child)
	s := newStore(t)
	ctx := context.Background()
	a, err := s.Pull(ctx, reg.Ref("test/base:1"), PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	baseDir := s.snapshots.Path(a.Layers[0].ChainID)
	before, err := os.Stat(filepath.Join(baseDir, "bin", "busybox"))
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	b, err := s.Pull(ctx, reg.Ref("test/child:1"), PullOptions{Progress: rec.fn})
	if err != nil {
		t.Fatal(err)
	}
	if b.Layers[0].ChainID != a.Layers[0].ChainID {
		t.Fatal("base layer chain IDs differ")
	}
	if rec.count("Already exists") != 1 || rec.count("Pull complete") != 1 {
		t.Fatalf("progress: %q", rec.statuses())
	}
	keys, _ := s.snapshots.List()
	if len(keys) != 2 {
		t.Fatalf("%d snapshots, want 2 (base unpacked once)", len(keys))
	}
	after, _ := os.Stat(filepath.Join(baseDir, "bin", "busybox"))
	if !os.SameFile(before, after) {
		t.Fatal("base layer was unpacked again")
	}
	lowers, _ := s.LowerDirs(ctx, b.ID)
	if len(lowers) != 2 || lowers[1] != baseDir {
		t.Fatalf("LowerDirs = %v", lowers)
	}
	if got, _ := os.ReadFile(filepath.Join(lowers[0], "child")); string(got) != "c" {
		t.Fatalf("child = %q", got)
	}
}

func TestConcurrentPulls(t *testing.T) {
	p := pushTestImages(t, imagetest.RegistryOptions{})
	s := newStore(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for _, ref := range []string{p.layered, p.layered, p.busybox, p.busybox, p.multi, p.layered} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Pull(ctx, ref, PullOptions{Progress: func(jsonstream.Message) {}})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := len(s.Images(ctx)); n != 3 {
		t.Fatalf("%d images, want 3", n)
	}
	assertNoLeftovers(t, s)
}
