package transport

import (
	"bytes"
	"errors"
	"testing"
)

type scanned struct {
	kind  byte
	nonce string
}

func scanAll(chunks ...[]byte) (got []scanned, rest []byte) {
	var sc frameScanner
	for _, c := range chunks {
		sc.feed(c)
		for {
			k, n, ok := sc.next()
			if !ok {
				break
			}
			got = append(got, scanned{k, n})
		}
	}
	return got, sc.rest()
}

func TestFrameScanner(t *testing.T) {
	const n1, n2 = "0123456789abcdef", "fedcba9876543210"
	sync1 := encodeFrame(frameSync, n1)
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	tests := []struct {
		name   string
		chunks [][]byte
		want   []scanned
		rest   string // bytes kept after the last frame: a possible frame start
	}{
		{"one frame", [][]byte{sync1}, []scanned{{frameSync, n1}}, ""},
		{"garbage around", [][]byte{cat([]byte{0, 1, 2, 0xff}, sync1, []byte("xyz"))}, []scanned{{frameSync, n1}}, "xyz"},
		{"split across reads", [][]byte{sync1[:3], sync1[3:10], sync1[10:]}, []scanned{{frameSync, n1}}, ""},
		{"two kinds", [][]byte{cat(sync1, encodeFrame(frameGo, n2))}, []scanned{{frameSync, n1}, {frameGo, n2}}, ""},
		{"bad kind skipped", [][]byte{cat([]byte("BERTHQ"+n1), sync1)}, []scanned{{frameSync, n1}}, ""},
		{"upper-case nonce rejected", [][]byte{[]byte("BERTHS0123456789ABCDEF")}, nil, "CDEF"},
		{"short nonce then real frame", [][]byte{cat([]byte("BERTHS0123"), sync1)}, []scanned{{frameSync, n1}}, ""},
		{"magic inside garbage", [][]byte{cat([]byte("BERBERTBERTH"), sync1)}, []scanned{{frameSync, n1}}, ""},
		{"flush then frame", [][]byte{flushBytes(), sync1}, []scanned{{frameSync, n1}}, ""},
		{"partial frame kept", [][]byte{cat([]byte("noise"), sync1[:12])}, nil, string(sync1[:12])},
		{"partial magic kept", [][]byte{[]byte("noiseBER")}, nil, "eBER"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, rest := scanAll(tc.chunks...)
			if len(got) != len(tc.want) {
				t.Fatalf("frames %q, want %q", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("frame %d: %q, want %q", i, got[i], tc.want[i])
				}
			}
			if string(rest) != tc.rest {
				t.Errorf("rest %q, want %q", rest, tc.rest)
			}
		})
	}
}

// TestHandshakeBytesNeverZero guards the property that makes a yamux
// session fail fast on handshake bytes: none of them is a valid version.
func TestHandshakeBytesNeverZero(t *testing.T) {
	all := [][]byte{flushBytes(), resetBytes()}
	for _, k := range []byte{frameSync, frameAck, frameGo, frameReady, frameReset} {
		all = append(all, encodeFrame(k, newNonce()))
	}
	for _, b := range all {
		if i := bytes.IndexByte(b, 0); i >= 0 {
			t.Errorf("handshake bytes %q hold a zero at %d", b[:min(len(b), 30)], i)
		}
	}
	if flushLen <= maxFrameBody+12 {
		t.Errorf("flush (%d) does not cover a whole frame (%d)", flushLen, maxFrameBody+12)
	}
}

func TestStreamHeader(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		want    streamHeader
		wantErr error
	}{
		{"port", streamHeader{port: 2375}.encode(), streamHeader{port: 2375}, nil},
		{"max port", streamHeader{port: 1<<32 - 1}.encode(), streamHeader{port: 1<<32 - 1}, nil},
		{"reset", streamHeader{resetID: 77}.encode(), streamHeader{resetID: 77}, nil},
		{"wire bytes", []byte{1, 0, 0, 4, 0}, streamHeader{port: 1024}, nil},
		{"bad version", []byte{2, 0, 0, 4, 0}, streamHeader{}, errBadHeader},
		{"short", []byte{1, 0}, streamHeader{}, nil},
		{"short reset", []byte{1, 0, 0, 0, 0, 1}, streamHeader{}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readStreamHeader(bytes.NewReader(tc.in))
			short := tc.name == "short" || tc.name == "short reset"
			switch {
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) {
					t.Errorf("err %v, want %v", err, tc.wantErr)
				}
			case short:
				if err == nil {
					t.Errorf("short header accepted: %+v", got)
				}
			case err != nil:
				t.Errorf("err %v", err)
			case got != tc.want:
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func FuzzFrameScanner(f *testing.F) {
	f.Add([]byte("BERTHS0123456789abcdef"), 5)
	f.Add(append(flushBytes()[:40], encodeFrame(frameGo, "00000000000000ff")...), 3)
	f.Add([]byte("BERTHBERTHS0123456789abcdef"), 1)
	f.Fuzz(func(t *testing.T, data []byte, split int) {
		// Scanning in one piece or in two must find the same frames.
		whole, _ := scanAll(data)
		if split < 0 {
			split = -split
		}
		split %= len(data) + 1
		parts, _ := scanAll(data[:split], data[split:])
		if len(whole) != len(parts) {
			t.Fatalf("whole found %d frames, split found %d", len(whole), len(parts))
		}
		for i := range whole {
			if whole[i] != parts[i] {
				t.Fatalf("frame %d differs: %q vs %q", i, whole[i], parts[i])
			}
			if !validKind(whole[i].kind) || !validNonce(whole[i].nonce) {
				t.Fatalf("invalid frame returned: %q", whole[i])
			}
		}
		var sc frameScanner
		sc.feed(data)
		for {
			if _, _, ok := sc.next(); !ok {
				break
			}
		}
		if len(sc.buf) >= frameLen {
			t.Fatalf("scanner kept %d bytes, more than a frame", len(sc.buf))
		}
	})
}
