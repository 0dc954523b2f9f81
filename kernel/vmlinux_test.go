package kernel

import (
	"bytes"
	"encoding/binary"
	"os/exec"
	"strings"
	"testing"
)

// fakeELF is a minimal x86_64 ELF whose only program header is a PT_NOTE
// holding one note.
func fakeELF(noteName string, noteType uint32) []byte {
	var note bytes.Buffer
	name := append([]byte(noteName), 0)
	for len(name)%4 != 0 {
		name = append(name, 0)
	}
	binary.Write(&note, binary.LittleEndian, []uint32{uint32(len(noteName) + 1), 4, noteType})
	note.Write(name)
	note.Write([]byte{0, 0, 0x10, 0})

	const ehsize, phsize = 64, 56
	var b bytes.Buffer
	b.Write([]byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	le := func(v any) { binary.Write(&b, binary.LittleEndian, v) }
	le(uint16(2))               // ET_EXEC
	le(uint16(62))              // EM_X86_64
	le(uint32(1))               // version
	le(uint64(0x1000000))       // entry
	le(uint64(ehsize))          // phoff
	le(uint64(0))               // shoff
	le(uint32(0))               // flags
	le(uint16(ehsize))          // ehsize
	le(uint16(phsize))          // phentsize
	le(uint16(1))               // phnum
	le(uint16(64))              // shentsize
	le(uint16(0))               // shnum
	le(uint16(0))               // shstrndx
	le(uint32(4))               // PT_NOTE
	le(uint32(4))               // flags
	le(uint64(ehsize + phsize)) // offset
	le(uint64(0))               // vaddr
	le(uint64(0))               // paddr
	le(uint64(note.Len()))      // filesz
	le(uint64(note.Len()))      // memsz
	le(uint64(4))               // align
	b.Write(note.Bytes())
	return b.Bytes()
}

// fakeBzImageWith wraps payload in a bzImage header (protocol 2.15, one
// setup sector).
func fakeBzImageWith(payload []byte) []byte {
	img := make([]byte, 2*512)
	img[0x1f1] = 1
	binary.LittleEndian.PutUint16(img[0x1fe:], 0xaa55)
	copy(img[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(img[0x206:], 0x20f)
	binary.LittleEndian.PutUint32(img[0x248:], 16)
	binary.LittleEndian.PutUint32(img[0x24c:], uint32(len(payload)+4))
	img = append(img, make([]byte, 16)...)
	img = append(img, payload...)
	return binary.LittleEndian.AppendUint32(img, 12345) // the size trailer
}

func xzCompress(t *testing.T, b []byte) []byte {
	t.Helper()
	if _, err := exec.LookPath("xz"); err != nil {
		t.Skip("xz is not installed")
	}
	cmd := exec.Command("xz", "-c", "--check=crc32", "--x86", "--lzma2")
	cmd.Stdin = bytes.NewReader(b)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestBootImageX86VMLinux(t *testing.T) {
	x86, _ := LookupArch("x86_64")
	pvh := fakeELF("Xen", xenPhys32Entry)
	noPVH := fakeELF("Xen", 5)
	gnu := fakeELF("GNU", xenPhys32Entry)
	for _, tc := range []struct {
		name    string
		in      []byte
		want    []byte
		wantErr string
	}{
		{name: "PVH vmlinux is extracted", in: fakeBzImageWith(xzCompress(t, pvh)), want: pvh},
		{name: "no PVH note keeps the bzImage", in: fakeBzImageWith(xzCompress(t, noPVH))},
		{name: "note of another owner keeps the bzImage", in: fakeBzImageWith(xzCompress(t, gnu))},
		{name: "gzip payload keeps the bzImage", in: fakeBzImageWith(gz(t, pvh))},
		{name: "corrupt xz", in: fakeBzImageWith(append(append([]byte{}, xzMagic...), 1, 2, 3)), wantErr: "decompressing the x86 kernel"},
		{name: "payload outside the file", in: fakeBzImageWith(nil)[:0x300], wantErr: "outside the file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := BootImage(x86, tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := tc.want
			if want == nil {
				want = tc.in
			}
			if !bytes.Equal(got, want) {
				t.Errorf("got %d bytes, want %d", len(got), len(want))
			}
		})
	}
}

func TestHasNoteBounds(t *testing.T) {
	// A huge namesz must not wrap around the bounds check.
	b := binary.LittleEndian.AppendUint32(nil, 0xfffffffd)
	b = binary.LittleEndian.AppendUint32(b, 8)
	b = binary.LittleEndian.AppendUint32(b, xenPhys32Entry)
	b = append(b, make([]byte, 16)...)
	if hasNote(b, "Xen", xenPhys32Entry) {
		t.Fatal("found a note in garbage")
	}
}
