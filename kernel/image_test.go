package kernel

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"strings"
	"testing"
)

func fakeARM64(size int) []byte {
	img := make([]byte, size)
	copy(img, "MZ")
	copy(img[0x38:], "ARM\x64")
	for i := 0x40; i < size; i++ {
		img[i] = byte(i * 7)
	}
	return img
}

func fakeBzImage() []byte {
	img := make([]byte, 4096)
	binary.LittleEndian.PutUint16(img[0x1fe:], 0xaa55)
	copy(img[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(img[0x206:], 0x20f)
	img[0x1f1] = 1 // an empty payload right after one setup sector
	return img
}

func gz(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestBootImage(t *testing.T) {
	x86, _ := LookupArch("x86_64")
	arm, _ := LookupArch("aarch64")
	image := fakeARM64(70000)
	notImage := make([]byte, 4096)
	truncGz := gz(t, image)
	truncGz = truncGz[:len(truncGz)/2]
	for _, tc := range []struct {
		name    string
		arch    Arch
		in      []byte
		want    []byte
		wantErr string
	}{
		{name: "arm64 gzip is decompressed", arch: arm, in: gz(t, image), want: image},
		{name: "arm64 plain Image passes", arch: arm, in: image, want: image},
		{name: "arm64 gzip of garbage", arch: arm, in: gz(t, notImage), wantErr: "not an arm64 Image"},
		{name: "arm64 truncated gzip", arch: arm, in: truncGz, wantErr: "decompressing arm64 kernel"},
		{name: "arm64 short", arch: arm, in: []byte("ARM"), wantErr: "not an arm64 Image"},
		{name: "x86 bzImage passes", arch: x86, in: fakeBzImage(), want: fakeBzImage()},
		{name: "x86 arm64 image refused", arch: x86, in: image, wantErr: "not an x86 bzImage"},
		{name: "unknown arch", arch: Arch{Name: "mips"}, in: image, wantErr: "no boot image format"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := BootImage(tc.arch, tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.want) {
				t.Errorf("image differs (%d bytes, want %d)", len(got), len(tc.want))
			}
		})
	}
}

func TestLookupArch(t *testing.T) {
	for _, tc := range []struct{ in, name, release string }{
		{"x86_64", "x86_64", ABI + "-amd64"},
		{"amd64", "x86_64", ABI + "-amd64"},
		{"aarch64", "aarch64", ABI + "-arm64"},
		{"arm64", "aarch64", ABI + "-arm64"},
	} {
		a, err := LookupArch(tc.in)
		if err != nil || a.Name != tc.name || a.Release() != tc.release {
			t.Errorf("LookupArch(%q) = %s %s, %v", tc.in, a.Name, a.Release(), err)
		}
	}
	if _, err := LookupArch("i386"); err == nil {
		t.Error("i386 accepted")
	}
}
