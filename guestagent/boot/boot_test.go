//go:build linux

package boot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

func TestHasExtSuperblock(t *testing.T) {
	withMagic := func(size int, magic uint16) []byte {
		b := make([]byte, size)
		if size >= extMagicOffset+2 {
			binary.LittleEndian.PutUint16(b[extMagicOffset:], magic)
		}
		return b
	}
	tests := []struct {
		name string
		disk []byte
		want bool
	}{
		{"zeros", make([]byte, 8192), false},
		{"ext4", withMagic(8192, 0xEF53), true},
		{"byte swapped", withMagic(8192, 0x53EF), false},
		{"other magic", withMagic(8192, 0x1234), false},
		{"tiny", make([]byte, 100), false},
		{"empty", nil, false},
		{"just enough", withMagic(extMagicOffset+2, 0xEF53), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := hasExtSuperblock(bytes.NewReader(tt.disk))
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestBitmapHas(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("bitmaps below are for 64-bit longs")
	}
	tests := []struct {
		bitmap string
		bit    int
		want   bool
	}{
		// x86 "Power Button": only KEY_POWER (116 = word 1, bit 52).
		{"10000000000000 0", keyPower, true},
		{"10000000000000 0", 115, false},
		{"0", keyPower, false},
		{"", keyPower, false},
		{"1", 0, true},
		{"4 0 0", 130, true},
		{"zz 0", keyPower, false},
	}
	for _, tt := range tests {
		if got := bitmapHas(tt.bitmap, tt.bit); got != tt.want {
			t.Errorf("bitmapHas(%q, %d) = %v, want %v", tt.bitmap, tt.bit, got, tt.want)
		}
	}
}

func TestPowerButtons(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("bitmaps below are for 64-bit longs")
	}
	sys := t.TempDir()
	for name, caps := range map[string]string{"event0": "10000000000000 0", "event1": "fffffffff 0", "event2": "0"} {
		dir := filepath.Join(sys, name, "device", "capabilities")
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, "key"), []byte(caps+"\n"), 0o644)
	}
	got, err := powerButtons(sys, "/dev/input")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"/dev/input/event0"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func inputEvent(typ, code uint16, value int32) []byte {
	b := make([]byte, inputEventSize)
	binary.NativeEndian.PutUint16(b[inputEventSize-8:], typ)
	binary.NativeEndian.PutUint16(b[inputEventSize-6:], code)
	binary.NativeEndian.PutUint32(b[inputEventSize-4:], uint32(value))
	return b
}

func TestWatchPowerKey(t *testing.T) {
	syn := inputEvent(0, 0, 0)
	tests := []struct {
		name    string
		stream  [][]byte
		pressed bool
	}{
		{"press", [][]byte{inputEvent(evKey, keyPower, 1), syn}, true},
		{"after others", [][]byte{inputEvent(evKey, 30, 1), syn, inputEvent(evKey, 30, 0), inputEvent(evKey, keyPower, 1)}, true},
		{"release only", [][]byte{inputEvent(evKey, keyPower, 0), syn}, false},
		{"other type", [][]byte{inputEvent(0x04, keyPower, 1)}, false},
		{"other key", [][]byte{inputEvent(evKey, 142, 1)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := watchPowerKey(bytes.NewReader(bytes.Join(tt.stream, nil)))
			if tt.pressed && err != nil {
				t.Errorf("press not seen: %v", err)
			}
			if !tt.pressed && err == nil {
				t.Error("saw a press that was not there")
			}
		})
	}
	// Events may arrive one read at a time.
	pr, pw := io.Pipe()
	go func() {
		pw.Write(inputEvent(evKey, 30, 1))
		pw.Write(inputEvent(evKey, keyPower, 1))
		pw.Close()
	}()
	if err := watchPowerKey(pr); err != nil {
		t.Errorf("split reads: %v", err)
	}
}

func TestParseStat(t *testing.T) {
	tests := []struct {
		in    string
		state byte
		flags uint64
		ok    bool
	}{
		{"1 (init) S 0 1 1 0 -1 4194560 100 0", 'S', 4194560, true},
		{"2 (kthreadd) S 0 0 0 0 -1 2129984 0 0", 'S', 2129984, true},
		{"42 (a b) c)) Z 1 42 42 0 -1 4194304 0", 'Z', 4194304, true},
		{"garbage", 0, 0, false},
		{"3 (x) R 1", 0, 0, false},
	}
	for _, tt := range tests {
		state, flags, ok := parseStat(tt.in)
		if state != tt.state || flags != tt.flags || ok != tt.ok {
			t.Errorf("parseStat(%q) = %c %d %v", tt.in, state, flags, ok)
		}
	}
	if 2129984&pfKthread == 0 {
		t.Error("kthreadd's flags should mark a kernel thread")
	}
	// This test process is a user process, so from a helper's view there is
	// at least one (ourselves excluded, the go tool is likely our parent).
	if n := userProcesses(); n < 1 {
		t.Errorf("userProcesses() = %d", n)
	}
}

const sampleMountinfo = `22 1 0:20 / / rw - tmpfs rootfs rw
23 22 0:21 / /proc rw,nosuid - proc proc rw
24 22 0:5 / /dev rw - devtmpfs devtmpfs rw,mode=755
25 24 0:22 / /dev/pts rw - devpts devpts rw
26 22 0:23 / /tmp rw shared:1 - tmpfs tmpfs rw
27 22 254:0 / /var/lib/berth rw,noatime - ext4 /dev/vda rw
28 27 0:40 / /var/lib/berth/overlay/c1/merged rw - overlay overlay rw,lowerdir=a
29 22 0:41 / /mnt/with\040space rw - 9p mount0 rw
`

func TestParseMountinfo(t *testing.T) {
	got := parseMountinfo(sampleMountinfo + "broken line\n")
	if len(got) != 8 {
		t.Fatalf("got %d entries: %+v", len(got), got)
	}
	if got[5] != (mountEntry{target: "/var/lib/berth", fstype: "ext4", source: "/dev/vda", id: 27, parent: 22}) {
		t.Errorf("entry 5: %+v", got[5])
	}
	if got[7].target != "/mnt/with space" {
		t.Errorf("escape not decoded: %q", got[7].target)
	}
}

func TestUnmountOrder(t *testing.T) {
	var got []string
	for _, m := range unmountOrder(parseMountinfo(sampleMountinfo)) {
		got = append(got, m.target)
	}
	want := []string{"/var/lib/berth/overlay/c1/merged", "/var/lib/berth", "/mnt/with space", "/tmp"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestRootMount(t *testing.T) {
	tests := []struct {
		name      string
		mountinfo string
		target    string
		initramfs bool
		ok        bool
	}{
		{"initramfs", "1 1 0:2 / / rw - rootfs rootfs rw\n22 1 0:20 / /proc rw - proc proc rw\n", "/", true, true},
		{"bind mount over it", "22 1 0:2 / / rw - rootfs rootfs rw\n23 22 0:20 / /proc rw - proc proc rw\n", "/", false, true},
		{"stacked, last wins", "1 1 0:2 / / rw - rootfs rootfs rw\n30 1 0:25 / / rw - tmpfs tmpfs rw\n", "/", false, true},
		{"disk root", "25 1 254:1 / / rw - ext4 /dev/vda1 rw\n", "/", false, true},
		{"no root", "23 22 0:20 / /proc rw - proc proc rw\n", "", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, ok := rootMount(parseMountinfo(tt.mountinfo))
			if ok != tt.ok || m.target != tt.target {
				t.Fatalf("rootMount = %+v, %v", m, ok)
			}
			if ok && (m.id == m.parent) != tt.initramfs {
				t.Errorf("initramfs = %v, want %v", m.id == m.parent, tt.initramfs)
			}
		})
	}
}

func TestHostsAndResolv(t *testing.T) {
	c := Cmdline{IP: netip.MustParsePrefix("192.168.127.2/24"), Hostname: "berth"}
	hosts := hostsContents(c)
	for _, want := range []string{"127.0.0.1\tlocalhost", "192.168.127.2\tberth", "192.168.127.254\thost.docker.internal host.berth.internal"} {
		if !strings.Contains(hosts, want) {
			t.Errorf("hosts lacks %q:\n%s", want, hosts)
		}
	}
	if h := hostsContents(Cmdline{}); strings.Contains(h, "host.docker.internal") {
		t.Errorf("no address, yet a host entry:\n%s", h)
	}
	if _, ok := hostLoopback(netip.MustParsePrefix("10.0.0.2/30")); ok {
		t.Error("a /30 has no .254")
	}
	r := resolvContents([]netip.Addr{netip.MustParseAddr("192.168.127.1"), netip.MustParseAddr("fd00::1")})
	if !strings.Contains(r, "nameserver 192.168.127.1\nnameserver fd00::1\n") {
		t.Errorf("resolv.conf:\n%s", r)
	}
}

func TestBootRefusesNonInit(t *testing.T) {
	if syscall.Getpid() == 1 {
		t.Skip("running as PID 1")
	}
	if _, err := Boot(t.Context(), Config{Log: slog.New(slog.DiscardHandler)}); err == nil {
		t.Error("Boot ran outside PID 1")
	}
}

func TestLinkVirtioPorts(t *testing.T) {
	sys, dev := t.TempDir(), t.TempDir()
	for port, name := range map[string]string{"vport0p0": "", "vport0p1": "berth.0\n", "vport1p1": "org.qemu.guest_agent.0", "vport1p2": "../evil"} {
		os.MkdirAll(filepath.Join(sys, port), 0o755)
		os.WriteFile(filepath.Join(sys, port, "name"), []byte(name), 0o644)
	}
	// A stale link from an earlier boot is replaced.
	os.MkdirAll(filepath.Join(dev, "virtio-ports"), 0o755)
	os.Symlink("../vport9p9", filepath.Join(dev, "virtio-ports", "berth.0"))
	for range 2 { // idempotent
		if err := linkVirtioPorts(sys, dev); err != nil {
			t.Fatal(err)
		}
	}
	ents, _ := os.ReadDir(filepath.Join(dev, "virtio-ports"))
	got := map[string]string{}
	for _, e := range ents {
		got[e.Name()], _ = os.Readlink(filepath.Join(dev, "virtio-ports", e.Name()))
	}
	want := map[string]string{"berth.0": "../vport0p1", "org.qemu.guest_agent.0": "../vport1p1"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("links %v, want %v", got, want)
	}
	if err := linkVirtioPorts(filepath.Join(sys, "missing"), dev); err != nil {
		t.Errorf("no virtio-ports class: %v", err)
	}
}

func TestLinkUp(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	// A new network namespace, on a thread that dies with the goroutine
	// (it exits still locked), has lo down.
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("skip: %w", err)
			return
		}
		flags := func() (uint16, error) {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
			if err != nil {
				return 0, err
			}
			defer unix.Close(fd)
			ifr, _ := unix.NewIfreq("lo")
			err = unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr)
			return ifr.Uint16(), err
		}
		if f, err := flags(); err != nil || f&unix.IFF_UP != 0 {
			errc <- fmt.Errorf("lo in a new namespace: flags %#x, %v", f, err)
			return
		}
		if err := linkUp("lo"); err != nil {
			errc <- err
			return
		}
		if f, err := flags(); err != nil || f&unix.IFF_UP == 0 {
			errc <- fmt.Errorf("lo after linkUp: flags %#x, %v", f, err)
			return
		}
		if err := linkUp("nosuchlink0"); err == nil {
			errc <- errors.New("linkUp of a missing link succeeded")
			return
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		if strings.HasPrefix(err.Error(), "skip: ") {
			t.Skip(err)
		}
		t.Fatal(err)
	}
}
