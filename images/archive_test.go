package images

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/klauspost/compress/gzip"

	"github.com/berthvm/berth/images/imagetest"
)

func TestSaveLoadRoundTrip(t *testing.T) {
	p := pushTestImages(t, imagetest.RegistryOptions{})
	ctx := context.Background()
	src := newStore(t)
	lay, err := src.Pull(ctx, p.layered, PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bb, err := src.Pull(ctx, p.busybox, PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Tag(ctx, bb.ID, "bb:2"); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := src.Save(ctx, []string{p.layered, "bb", bb.ID}, &buf); err != nil {
		t.Fatal(err)
	}
	names := tarNames(t, buf.Bytes())
	for _, want := range []string{"manifest.json", "repositories", "index.json", "oci-layout", blobPath(lay.Layers[0].DiffID)} {
		if !slices.Contains(names, want) {
			t.Errorf("archive lacks %s: %v", want, names)
		}
	}
	var manifest []archiveEntry
	if err := json.Unmarshal(tarFile(t, buf.Bytes(), "manifest.json"), &manifest); err != nil {
		t.Fatal(err)
	}
	if len(manifest) != 2 || !slices.Equal(manifest[0].RepoTags, []string{p.layered}) || !slices.Equal(manifest[1].RepoTags, []string{"bb:2"}) {
		t.Fatalf("manifest.json = %+v", manifest)
	}

	// Another tool reads it (go-containerregistry's docker-archive reader).
	tag, _ := name.NewTag(p.layered, name.Insecure)
	path := filepath.Join(t.TempDir(), "save.tar")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	gimg, err := tarball.ImageFromPath(path, &tag)
	if err != nil {
		t.Fatalf("ggcr cannot read the archive: %v", err)
	}
	if cn, _ := gimg.ConfigName(); cn.String() != lay.ID {
		t.Fatalf("ggcr config = %s, want %s", cn, lay.ID)
	}

	dst := newStore(t)
	rec := &recorder{}
	loaded, err := dst.Load(ctx, bytes.NewReader(buf.Bytes()), LoadOptions{Progress: rec.fn})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(loaded)
	if want := []string{p.layered, "bb:2"}; !slices.Equal(loaded, sorted(want)) {
		t.Fatalf("loaded %v, want %v", loaded, want)
	}
	if !rec.has(t, "Loaded image: bb:2") {
		t.Errorf("progress: %q", rec.statuses())
	}
	got, err := dst.Resolve(ctx, p.layered)
	if err != nil || got.ID != lay.ID || len(got.Layers) != 3 {
		t.Fatalf("loaded image: %+v, %v", got, err)
	}
	for i, l := range got.Layers {
		if l.DiffID != lay.Layers[i].DiffID || l.ChainID != lay.Layers[i].ChainID || l.Size != lay.Layers[i].Size {
			t.Errorf("layer %d: %+v vs %+v", i, l, lay.Layers[i])
		}
	}
	if s, ok := readLayerFile(t, dst, p.layered, "etc/motd"); !ok || s != "v2\n" {
		t.Errorf("etc/motd = %q", s)
	}
	// The loaded image saves to the same layers again (compressed anew).
	var again bytes.Buffer
	if err := dst.Save(ctx, []string{p.layered}, &again); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(tarFile(t, again.Bytes(), blobPath(lay.Layers[1].DiffID)), tarFile(t, buf.Bytes(), blobPath(lay.Layers[1].DiffID))) {
		t.Error("layer differs after load and save")
	}
	// An OCI layout alone (no manifest.json) loads too, tags from its
	// annotations.
	oci := withoutEntries(t, buf.Bytes(), "manifest.json", "repositories")
	s3 := newStore(t)
	loaded, err = s3.Load(ctx, bytes.NewReader(oci), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s3.Resolve(ctx, p.layered); err != nil || got.ID != lay.ID || !slices.Contains(loaded, "bb:2") {
		t.Fatalf("OCI layout load: %v %+v %v", loaded, got, err)
	}
	// Loading again over the same tags changes nothing and says so quietly.
	rec2 := &recorder{}
	if _, err := dst.Load(ctx, bytes.NewReader(buf.Bytes()), LoadOptions{Progress: rec2.fn}); err != nil {
		t.Fatal(err)
	}
	for _, s := range rec2.statuses() {
		if strings.Contains(s, "renaming the old one") {
			t.Errorf("reload renamed: %q", s)
		}
	}
}

func sorted(s []string) []string { s = slices.Clone(s); sort.Strings(s); return s }

func TestLoadForeignArchive(t *testing.T) {
	// go-containerregistry writes the classic `docker save` layout with
	// gzip layers named <hex>.tar.gz; gzip the whole archive as well.
	img := imagetest.Layered(t)
	tag, _ := name.NewTag("example.com/foreign/app:1.0")
	var raw bytes.Buffer
	if err := tarball.Write(tag, img, &raw); err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(raw.Bytes())
	_ = zw.Close()
	s := newStore(t)
	ctx := context.Background()
	loaded, err := s.Load(ctx, &gz, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(loaded, []string{"example.com/foreign/app:1.0"}) {
		t.Fatalf("loaded %v", loaded)
	}
	cn, _ := img.ConfigName()
	got, err := s.Resolve(ctx, "example.com/foreign/app:1.0")
	if err != nil || got.ID != cn.String() {
		t.Fatalf("%+v %v", got, err)
	}
	if s, ok := readLayerFile(t, s, got.ID, "usr/local/bin/greet"); !ok || !strings.Contains(s, "greet") {
		t.Fatalf("greet: %q", s)
	}
	// Loading a tag that points elsewhere moves it and says so.
	other := imagetest.Busybox(t, hostArch())
	raw.Reset()
	if err := tarball.Write(tag, other, &raw); err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	if _, err := s.Load(ctx, &raw, LoadOptions{Progress: rec.fn}); err != nil {
		t.Fatal(err)
	}
	if !rec.has(t, "The image example.com/foreign/app:1.0 already exists, renaming the old one with ID "+cn.String()+" to empty string") {
		t.Fatalf("progress: %q", rec.statuses())
	}
}

func TestLoadRefusesBadArchives(t *testing.T) {
	mk := func(files map[string]string) []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		names := make([]string, 0, len(files))
		for n := range files {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			_ = tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(files[n])), Typeflag: tar.TypeReg})
			_, _ = io.WriteString(tw, files[n])
		}
		_ = tw.Close()
		return buf.Bytes()
	}
	cfg := `{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:` + strings.Repeat("1", 64) + `"]}}`
	layerTar := string(imagetest.Tar(t, imagetest.File{Name: "a", Body: "b"}))
	tests := map[string][]byte{
		"empty":          mk(map[string]string{}),
		"escaping entry": mk(map[string]string{"../x": "y"}),
		"missing layer":  mk(map[string]string{"manifest.json": `[{"Config":"c.json","Layers":["l.tar"]}]`, "c.json": cfg}),
		"wrong diff ID":  mk(map[string]string{"manifest.json": `[{"Config":"c.json","Layers":["l.tar"]}]`, "c.json": cfg, "l.tar": layerTar}),
		"config escapes": mk(map[string]string{"manifest.json": `[{"Config":"../c.json","Layers":[]}]`}),
		"bad tag":        mk(map[string]string{"manifest.json": `[{"Config":"c.json","RepoTags":["Bad Tag"],"Layers":[]}]`, "c.json": `{"rootfs":{"type":"layers"}}`}),
		"not a tar":      []byte(strings.Repeat("garbage ", 200)),
	}
	for name, data := range tests {
		t.Run(name, func(t *testing.T) {
			s := newStore(t)
			if _, err := s.Load(context.Background(), bytes.NewReader(data), LoadOptions{}); err == nil {
				t.Fatal("want error")
			} else if !errors.Is(err, ErrInvalid) {
				t.Logf("error (not ErrInvalid): %v", err)
			}
			if len(s.Images(context.Background())) != 0 {
				t.Fatal("image stored")
			}
			assertNoLeftovers(t, s)
		})
	}
}

func tarNames(t testing.TB, b []byte) []string {
	t.Helper()
	var out []string
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, h.Name)
	}
}

func tarFile(t testing.TB, b []byte, name string) []byte {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("%s not in archive: %v", name, err)
		}
		if h.Name == name {
			out, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			return out
		}
	}
}

// withoutEntries copies a tar without the named entries.
func withoutEntries(t testing.TB, b []byte, names ...string) []byte {
	t.Helper()
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(names, h.Name) {
			continue
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(tw, tr); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}
