package imagetest

import (
	"archive/tar"
	"bytes"
	"io"
	"runtime"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/compression"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Created is the creation time of every test image, so they are
// reproducible.
func Created() time.Time { return time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC) }

// File is one entry of a test layer tar. Type defaults to a regular file
// (a directory when Name ends in "/"); Mode defaults to 0644 (0755 for
// directories).
type File struct {
	Name     string
	Body     string
	Mode     int64
	Type     byte
	Link     string
	UID, GID int
}

// Tar builds an uncompressed layer tar.
func Tar(t testing.TB, files ...File) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.Name, Mode: f.Mode, Typeflag: f.Type, Linkname: f.Link, Uid: f.UID, Gid: f.GID, ModTime: Created(), Format: tar.FormatPAX}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
			if len(f.Name) > 0 && f.Name[len(f.Name)-1] == '/' {
				h.Typeflag = tar.TypeDir
			}
		}
		if h.Mode == 0 {
			h.Mode = 0o644
			if h.Typeflag == tar.TypeDir {
				h.Mode = 0o755
			}
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(f.Body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := io.WriteString(tw, f.Body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func opener(b []byte) tarball.Opener {
	return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}

// GzipLayer is a gzip layer of the tar b with media type mt (Docker's
// or OCI's gzip layer type).
func GzipLayer(t testing.TB, b []byte, mt types.MediaType) v1.Layer {
	t.Helper()
	l, err := tarball.LayerFromOpener(opener(b), tarball.WithMediaType(mt), tarball.WithCompressedCaching)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// ZstdLayer is an OCI zstd layer of the tar b.
func ZstdLayer(t testing.TB, b []byte) v1.Layer {
	t.Helper()
	l, err := tarball.LayerFromOpener(opener(b), tarball.WithCompression(compression.ZStd), tarball.WithMediaType(types.OCILayerZStd), tarball.WithCompressedCaching)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// PlainLayer is an uncompressed OCI layer of the tar b.
func PlainLayer(b []byte) v1.Layer { return static.NewLayer(b, types.OCIUncompressedLayer) }

func hostArch() string { return runtime.GOARCH }

// BaseFiles is a minimal busybox root for arch: /bin/busybox with its
// applets as symlinks, /etc/passwd and group (root, nobody, app 1000),
// /tmp and /root.
func BaseFiles(t testing.TB, arch string) []File {
	t.Helper()
	files := []File{
		{Name: "bin/"},
		{Name: "bin/busybox", Body: string(BusyboxBinary(t, arch)), Mode: 0o755},
	}
	for _, a := range Applets(t) {
		files = append(files, File{Name: "bin/" + a, Type: tar.TypeSymlink, Link: "busybox", Mode: 0o777})
	}
	files = append(files,
		File{Name: "etc/"},
		File{Name: "etc/passwd", Body: "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"},
		File{Name: "etc/group", Body: "root:x:0:\napp:x:1000:\nnogroup:x:65534:\n"},
		File{Name: "tmp/", Mode: 0o1777},
		File{Name: "root/", Mode: 0o700},
	)
	return files
}

func configure(t testing.TB, img v1.Image, arch string, edit func(*v1.ConfigFile)) v1.Image {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = "linux", arch, ""
	if arch == "arm64" {
		cf.Variant = "v8"
	}
	cf.Created = v1.Time{Time: Created()}
	cf.Config.Env = []string{"PATH=/usr/local/bin:/bin"}
	if edit != nil {
		edit(cf)
	}
	out, err := mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Busybox is a one-layer busybox image for arch with Cmd ["sh"]; extra
// files go into the same layer.
func Busybox(t testing.TB, arch string, extra ...File) v1.Image {
	t.Helper()
	files := append(BaseFiles(t, arch), extra...)
	img, err := mutate.AppendLayers(empty.Image, GzipLayer(t, Tar(t, files...), types.DockerLayer))
	if err != nil {
		t.Fatal(err)
	}
	return configure(t, img, arch, func(cf *v1.ConfigFile) {
		cf.Config.Cmd = []string{"sh"}
		cf.History = []v1.History{{Created: v1.Time{Time: Created()}, CreatedBy: "ADD busybox /"}}
	})
}

// Layered is an image for the host arch with three layers (gzip, gzip,
// zstd, so an OCI manifest):
//
//   - 1: busybox root, /data/{keep,gone}, /opq/{old1,olddir/deep}, /etc/motd "v1"
//   - 2: /etc/motd "v2", a whiteout of /data/gone, /opq made opaque with
//     /opq/new, /usr/local/bin/entry.sh (exec "$@"), /home/app owned 1000
//   - 3: /usr/local/bin/greet and its hardlink greet2
//
// Its config has Entrypoint, Cmd, Env, WorkingDir, User, Labels,
// ExposedPorts and a history with an empty (ENV) layer entry.
func Layered(t testing.TB) v1.Image {
	t.Helper()
	arch := hostArch()
	l1 := append(BaseFiles(t, arch),
		File{Name: "data/"},
		File{Name: "data/keep", Body: "keep\n"},
		File{Name: "data/gone", Body: "gone\n"},
		File{Name: "opq/"},
		File{Name: "opq/old1", Body: "old1\n"},
		File{Name: "opq/olddir/"},
		File{Name: "opq/olddir/deep", Body: "deep\n"},
		File{Name: "etc/motd", Body: "v1\n"},
	)
	l2 := []File{
		{Name: "etc/"},
		{Name: "etc/motd", Body: "v2\n"},
		{Name: "data/"},
		{Name: "data/.wh.gone"},
		{Name: "opq/"},
		{Name: "opq/.wh..wh..opq"},
		{Name: "opq/new", Body: "new\n"},
		{Name: "usr/local/bin/entry.sh", Body: "#!/bin/sh\nexec \"$@\"\n", Mode: 0o755},
		{Name: "home/app/", UID: 1000, GID: 1000},
	}
	l3 := []File{
		{Name: "usr/local/bin/greet", Body: "#!/bin/sh\necho \"$GREETING from greet\"\n", Mode: 0o755},
		{Name: "usr/local/bin/greet2", Type: tar.TypeLink, Link: "usr/local/bin/greet", Mode: 0o755},
	}
	img, err := mutate.AppendLayers(empty.Image,
		GzipLayer(t, Tar(t, l1...), types.OCILayer),
		GzipLayer(t, Tar(t, l2...), types.OCILayer),
		ZstdLayer(t, Tar(t, l3...)),
	)
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	return configure(t, img, arch, func(cf *v1.ConfigFile) {
		cf.Author = "berth tests"
		cf.Config.Entrypoint = []string{"/usr/local/bin/entry.sh"}
		cf.Config.Cmd = []string{"sh"}
		cf.Config.Env = []string{"PATH=/usr/local/bin:/bin", "GREETING=hello"}
		cf.Config.WorkingDir = "/data"
		cf.Config.User = "1000:1000"
		cf.Config.Labels = map[string]string{"org.berth.test": "layered", "maintainer": "berth"}
		cf.Config.ExposedPorts = map[string]struct{}{"8080/tcp": {}}
		at := v1.Time{Time: Created()}
		cf.History = []v1.History{
			{Created: at, CreatedBy: "ADD busybox /"},
			{Created: at, CreatedBy: "RUN rm /data/gone && rm -rf /opq && mkdir /opq && echo new > /opq/new"},
			{Created: at, CreatedBy: "ENV GREETING=hello", EmptyLayer: true},
			{Created: at, CreatedBy: "COPY greet /usr/local/bin/", Comment: "last"},
		}
	})
}

// MultiArch is a Docker manifest list of busybox images for linux/amd64
// and linux/arm64/v8, each with /etc/arch naming its arch, plus an
// attestation-like entry for unknown/unknown that pulls must skip.
func MultiArch(t testing.TB) v1.ImageIndex {
	t.Helper()
	idx := mutate.IndexMediaType(empty.Index, types.DockerManifestList)
	var adds []mutate.IndexAddendum
	for _, arch := range []string{"amd64", "arm64"} {
		img := Busybox(t, arch, File{Name: "etc/arch", Body: arch + "\n"})
		p := &v1.Platform{OS: "linux", Architecture: arch}
		if arch == "arm64" {
			p.Variant = "v8"
		}
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: p}})
	}
	att, err := mutate.AppendLayers(empty.Image, PlainLayer(Tar(t, File{Name: "attestation.json", Body: "{}"})))
	if err != nil {
		t.Fatal(err)
	}
	adds = append(adds, mutate.IndexAddendum{Add: att, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "unknown", Architecture: "unknown"}}})
	return mutate.AppendManifests(idx, adds...)
}
