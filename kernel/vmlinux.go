package kernel

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os/exec"
)

// xzMagic starts an xz stream.
var xzMagic = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}

// bzPayload returns the compressed kernel inside a bzImage: the boot
// protocol (Documentation/arch/x86/boot.rst, 2.08+) puts payload_offset
// and payload_length at 0x248, counted from the protected-mode code, which
// starts after the setup sectors (setup_sects at 0x1f1; 0 means 4).
func bzPayload(img []byte) ([]byte, error) {
	if len(img) < 0x250 {
		return nil, errors.New("bzImage header is truncated")
	}
	if v := binary.LittleEndian.Uint16(img[0x206:]); v < 0x208 {
		return nil, fmt.Errorf("boot protocol %#x has no payload fields", v)
	}
	setup := int(img[0x1f1])
	if setup == 0 {
		setup = 4
	}
	start := (setup + 1) * 512
	off := int(binary.LittleEndian.Uint32(img[0x248:]))
	n := int(binary.LittleEndian.Uint32(img[0x24c:]))
	if start+off < start || start+off+n > len(img) || n < 0 {
		return nil, fmt.Errorf("bzImage payload (%d bytes at %d) lies outside the file", n, start+off)
	}
	return img[start+off : start+off+n], nil
}

// unxz decompresses the kernel's xz stream with the xz tool: the kernel
// compresses with the x86 BCJ filter, which Go's xz readers lack. The
// payload ends with the uncompressed size, hence --single-stream.
func unxz(payload []byte) ([]byte, error) {
	path, err := exec.LookPath("xz")
	if err != nil {
		return nil, errors.New("the xz tool is missing: apt-get install xz-utils")
	}
	cmd := exec.Command(path, "-dc", "--single-stream")
	cmd.Stdin = bytes.NewReader(payload)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("xz: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	if out.Len() > maxImage {
		return nil, fmt.Errorf("kernel is larger than %d bytes", maxImage)
	}
	return out.Bytes(), nil
}

// xenPhys32Entry is XEN_ELFNOTE_PHYS32_ENTRY, the note that marks a PVH
// entry point (QEMU boots an ELF -kernel only through it).
const xenPhys32Entry = 18

// hasPVHEntry reports whether b is an x86_64 ELF with a PVH entry note.
func hasPVHEntry(b []byte) bool {
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil || f.Machine != elf.EM_X86_64 {
		return false
	}
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		notes, err := io.ReadAll(io.LimitReader(p.Open(), 1<<20))
		if err != nil {
			continue
		}
		if hasNote(notes, "Xen", xenPhys32Entry) {
			return true
		}
	}
	return false
}

// hasNote walks ELF notes (namesz, descsz, type, name, desc; 4-byte
// aligned) looking for one of that name and type.
func hasNote(b []byte, name string, typ uint32) bool {
	align := func(n uint32) uint64 { return (uint64(n) + 3) &^ 3 }
	for len(b) >= 12 {
		namesz := binary.LittleEndian.Uint32(b[0:])
		descsz := binary.LittleEndian.Uint32(b[4:])
		t := binary.LittleEndian.Uint32(b[8:])
		b = b[12:]
		if align(namesz)+align(descsz) > uint64(len(b)) {
			return false
		}
		n := string(bytes.TrimRight(b[:namesz], "\x00"))
		if t == typ && n == name {
			return true
		}
		b = b[align(namesz)+align(descsz):]
	}
	return false
}
