package portfwd

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
)

func TestRequestRoundTrip(t *testing.T) {
	tests := []request{
		{Proto: TCP, Addr: netip.MustParseAddrPort("172.17.0.2:80")},
		{Proto: UDP, Addr: netip.MustParseAddrPort("127.0.0.1:53")},
		{Proto: TCP, Addr: netip.MustParseAddrPort("[::1]:8080")},
		{Proto: TCP, Addr: netip.MustParseAddrPort("[fd00:1234:5678:9abc:def0:1234:5678:9abc]:65535")},
	}
	for _, want := range tests {
		t.Run(want.Proto+" "+want.Addr.String(), func(t *testing.T) {
			b, err := want.encode()
			if err != nil {
				t.Fatal(err)
			}
			r := bytes.NewReader(append(b, "payload"...))
			got, err := readRequest(r)
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Fatalf("got %+v, want %+v", got, want)
			}
			// The header is read exactly: the payload stays.
			rest, _ := io.ReadAll(r)
			if string(rest) != "payload" {
				t.Fatalf("header overread: rest %q", rest)
			}
		})
	}
}

func TestRequestEncodeRejects(t *testing.T) {
	tests := []struct {
		name string
		req  request
	}{
		{"unknown protocol", request{Proto: "sctp", Addr: netip.MustParseAddrPort("1.2.3.4:5")}},
		{"no address", request{Proto: TCP}},
		{"port 0", request{Proto: TCP, Addr: netip.MustParseAddrPort("1.2.3.4:0")}},
	}
	for _, tt := range tests {
		if _, err := tt.req.encode(); err == nil {
			t.Errorf("%s: encoded", tt.name)
		}
	}
}

func TestReadRequestRejects(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		bad  bool // errBadRequest rather than a short read
	}{
		{"empty", nil, false},
		{"short header", []byte{1, 1}, false},
		{"wrong version", append([]byte{2, 1, 9}, "1.2.3.4:5"...), true},
		{"unknown protocol", append([]byte{1, 9, 9}, "1.2.3.4:5"...), true},
		{"truncated address", append([]byte{1, 1, 20}, "1.2.3.4:5"...), false},
		{"not an address", append([]byte{1, 1, 5}, "hello"...), true},
		{"host name", append([]byte{1, 1, 12}, "example.com:"...), true},
		{"port 0", append([]byte{1, 1, 9}, "1.2.3.4:0"...), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := readRequest(bytes.NewReader(tt.in))
			if err == nil {
				t.Fatal("accepted")
			}
			if got := errors.Is(err, errBadRequest); got != tt.bad {
				t.Fatalf("errBadRequest = %v, want %v (%v)", got, tt.bad, err)
			}
		})
	}
}

func TestStatusRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		failure error
		want    string // "" for success
	}{
		{"ok", nil, ""},
		{"refused", errors.New("dial tcp 172.17.0.2:80: connect: connection refused"), "connection refused"},
		{"long message is cut", errors.New(strings.Repeat("x", 400)), strings.Repeat("x", 255)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := writeStatus(&b, tt.failure); err != nil {
				t.Fatal(err)
			}
			b.WriteString("data")
			err := readStatus(&b)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
			} else {
				var gde *GuestDialError
				if !errors.As(err, &gde) || !strings.Contains(gde.Msg, tt.want) {
					t.Fatalf("got %v, want a GuestDialError with %q", err, tt.want)
				}
			}
			if b.String() != "data" {
				t.Fatalf("status overread: rest %q", b.String())
			}
		})
	}
	if err := readStatus(bytes.NewReader([]byte{7})); err == nil {
		t.Fatal("unknown status accepted")
	}
}

func TestFrames(t *testing.T) {
	var b bytes.Buffer
	payloads := [][]byte{[]byte("one"), {}, bytes.Repeat([]byte{0xab}, maxDatagram), []byte("last")}
	var out []byte
	var err error
	for _, p := range payloads {
		if out, err = writeFrame(&b, out, p); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := writeFrame(&b, nil, make([]byte, maxDatagram+1)); err == nil {
		t.Fatal("oversized datagram framed")
	}
	buf := make([]byte, maxDatagram)
	for i, want := range payloads {
		got, err := readFrame(&b, buf)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("frame %d: %d bytes, want %d", i, len(got), len(want))
		}
	}
	if _, err := readFrame(&b, buf); !errors.Is(err, io.EOF) {
		t.Fatalf("at the end: %v, want EOF", err)
	}
	if _, err := readFrame(bytes.NewReader([]byte{0, 9, 'a'}), buf); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated frame: %v, want ErrUnexpectedEOF", err)
	}
}

func FuzzReadRequest(f *testing.F) {
	for _, r := range []request{
		{Proto: TCP, Addr: netip.MustParseAddrPort("172.17.0.2:80")},
		{Proto: UDP, Addr: netip.MustParseAddrPort("[::1]:53")},
	} {
		b, _ := r.encode()
		f.Add(b)
	}
	f.Add([]byte{1, 1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := readRequest(bytes.NewReader(b))
		if err != nil {
			return
		}
		// Whatever parses re-encodes to a request that parses the same.
		enc, err := req.encode()
		if err != nil {
			t.Fatalf("parsed %+v does not encode: %v", req, err)
		}
		again, err := readRequest(bytes.NewReader(enc))
		if err != nil || again != req {
			t.Fatalf("re-parse: %+v %v, want %+v", again, err, req)
		}
	})
}
