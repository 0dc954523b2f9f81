package kernel

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
)

// maxImage bounds a decompressed arm64 Image (Debian's is about 33 MB).
const maxImage = 256 << 20

// BootImage turns Debian's /boot/vmlinuz-* into what the hypervisors boot:
// the bzImage as is on x86_64, and on aarch64 the uncompressed Image that
// vz requires (gunzipped when the package ships it compressed).
func BootImage(a Arch, vmlinuz []byte) ([]byte, error) {
	switch a.Name {
	case "x86_64":
		if err := checkBzImage(vmlinuz); err != nil {
			return nil, err
		}
		return vmlinuz, nil
	case "aarch64":
		img := vmlinuz
		if bytes.HasPrefix(img, []byte{0x1f, 0x8b}) {
			var err error
			if img, err = gunzip(img); err != nil {
				return nil, fmt.Errorf("decompressing arm64 kernel: %w", err)
			}
		}
		if err := checkARM64Image(img); err != nil {
			return nil, err
		}
		return img, nil
	}
	return nil, fmt.Errorf("no boot image format for %s", a.Name)
}

func gunzip(b []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	out, err := io.ReadAll(io.LimitReader(zr, maxImage+1))
	if err != nil {
		return nil, err
	}
	if len(out) > maxImage {
		return nil, fmt.Errorf("image is larger than %d bytes", maxImage)
	}
	return out, zr.Close()
}

// checkARM64Image checks the arm64 boot header (Documentation/arch/arm64/
// booting.rst): the magic "ARM\x64" at offset 0x38.
func checkARM64Image(img []byte) error {
	const magicOff = 0x38
	if len(img) < magicOff+4 || string(img[magicOff:magicOff+4]) != "ARM\x64" {
		return fmt.Errorf("not an arm64 Image: no ARM\\x64 magic at offset 0x38")
	}
	return nil
}

// checkBzImage checks the x86 boot protocol header: the 0xAA55 boot flag
// at 0x1fe and "HdrS" at 0x202.
func checkBzImage(img []byte) error {
	if len(img) < 0x206 || binary.LittleEndian.Uint16(img[0x1fe:]) != 0xaa55 || string(img[0x202:0x206]) != "HdrS" {
		return fmt.Errorf("not an x86 bzImage: no boot flag and HdrS header")
	}
	return nil
}
