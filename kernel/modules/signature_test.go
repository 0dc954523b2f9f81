package modules

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
)

func signed(body, sig string) []byte {
	var info [12]byte
	info[2] = 2 // PKEY_ID_PKCS7
	binary.BigEndian.PutUint32(info[8:], uint32(len(sig)))
	return append(append(append([]byte(body), sig...), info[:]...), sigMagic...)
}

func TestStripSignature(t *testing.T) {
	tests := []struct {
		name   string
		in     []byte
		want   string
		strip  bool
		errMsg string
	}{
		{"signed", signed("\x7fELF module body", "PKCS7 blob"), "\x7fELF module body", true, ""},
		{"unsigned", []byte("\x7fELF plain"), "\x7fELF plain", false, ""},
		{"length past the start", signed("x", "sig")[2:], "", false, "bad length"},
		{"only the magic", []byte(sigMagic), "", false, "too short"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, stripped, err := StripSignature(tt.in)
			if tt.errMsg != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errMsg) {
					t.Fatalf("err = %v, want %q", err, tt.errMsg)
				}
				return
			}
			if err != nil || stripped != tt.strip || !bytes.Equal(got, []byte(tt.want)) {
				t.Errorf("StripSignature = %q, %v, %v; want %q, %v", got, stripped, err, tt.want, tt.strip)
			}
		})
	}
}
