//go:build unix

package netpair

import (
	"bytes"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestPairCarriesDatagramsBothWays(t *testing.T) {
	vmEnd, hostEnd, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer vmEnd.Close()
	defer hostEnd.Close()
	vmConn, err := net.FileConn(vmEnd)
	if err != nil {
		t.Fatal(err)
	}
	defer vmConn.Close()
	hostConn, err := net.FileConn(hostEnd)
	if err != nil {
		t.Fatal(err)
	}
	defer hostConn.Close()

	tests := []struct {
		name     string
		from, to net.Conn
		frames   [][]byte
	}{
		{"vm to host", vmConn, hostConn, [][]byte{[]byte("frame one"), bytes.Repeat([]byte{0xab}, 1514), {0}}},
		{"host to vm", hostConn, vmConn, [][]byte{bytes.Repeat([]byte{0xcd}, 9000), []byte("tiny")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, f := range tt.frames {
				if _, err := tt.from.Write(f); err != nil {
					t.Fatal(err)
				}
			}
			// Datagrams keep their boundaries: each read is one frame.
			buf := make([]byte, 65536)
			tt.to.SetReadDeadline(time.Now().Add(5 * time.Second))
			for i, want := range tt.frames {
				n, err := tt.to.Read(buf)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(buf[:n], want) {
					t.Errorf("frame %d: got %d bytes, want %d", i, n, len(want))
				}
			}
		})
	}
}

func TestPairIsDatagramAndCloexec(t *testing.T) {
	vmEnd, hostEnd, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer vmEnd.Close()
	defer hostEnd.Close()
	for _, f := range []*os.File{vmEnd, hostEnd} {
		typ, err := syscall.GetsockoptInt(int(f.Fd()), syscall.SOL_SOCKET, syscall.SO_TYPE)
		if err != nil {
			t.Fatal(err)
		}
		if typ != syscall.SOCK_DGRAM {
			t.Errorf("%s: socket type %d, want SOCK_DGRAM", f.Name(), typ)
		}
	}
}

// minBuffer is the least buffer size the OS lets New set without privilege.
func minBuffer(t *testing.T, want int, sysctl string) int {
	t.Helper()
	if runtime.GOOS != "linux" || os.Geteuid() == 0 {
		return want
	}
	b, err := os.ReadFile("/proc/sys/net/core/" + sysctl)
	if err != nil {
		t.Fatal(err)
	}
	limit, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return min(want, limit)
}

func TestPairBuffersRaised(t *testing.T) {
	vmEnd, hostEnd, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer vmEnd.Close()
	defer hostEnd.Close()
	tests := []struct {
		name string
		opt  int
		want int
	}{
		{"SO_SNDBUF", syscall.SO_SNDBUF, minBuffer(t, SendBuffer, "wmem_max")},
		{"SO_RCVBUF", syscall.SO_RCVBUF, minBuffer(t, ReceiveBuffer, "rmem_max")},
	}
	for _, tt := range tests {
		for _, f := range []*os.File{vmEnd, hostEnd} {
			got, err := syscall.GetsockoptInt(int(f.Fd()), syscall.SOL_SOCKET, tt.opt)
			if err != nil {
				t.Fatal(err)
			}
			// Linux reports twice the size set, for its bookkeeping.
			if got < tt.want {
				t.Errorf("%s %s = %d, want at least %d", f.Name(), tt.name, got, tt.want)
			}
		}
	}
}
