package engine

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestParseDetachKeys(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want []byte
		ok   bool
	}{
		{"", []byte{16, 17}, true},
		{"ctrl-p,ctrl-q", []byte{16, 17}, true},
		{"ctrl-a,x", []byte{1, 'x'}, true},
		{"CTRL-Z", []byte{26}, true},
		{"ctrl-@,ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_", []byte{0, 27, 28, 29, 30, 31}, true},
		{"a,b,c", []byte("abc"), true},
		{",", nil, false}, // keys are split on commas: a comma cannot be one
		{"ctrl-1", nil, false},
		{"ctrl-", nil, false},
		{"ab", nil, false},
		{"a,,b", nil, false},
		{"ctrl-pp", nil, false},
	} {
		got, err := ParseDetachKeys(tt.in)
		if (err == nil) != tt.ok || !bytes.Equal(got, tt.want) {
			t.Errorf("ParseDetachKeys(%q) = %v, %v", tt.in, got, err)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseDetachKeys(%q): %v is not ErrInvalid", tt.in, err)
		}
	}
}

func FuzzParseDetachKeys(f *testing.F) {
	for _, s := range []string{"", "ctrl-p,ctrl-q", "a,ctrl-@", "ctrl-", ",,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		keys, err := ParseDetachKeys(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("%q: error %v is not ErrInvalid", s, err)
			}
			return
		}
		if len(keys) == 0 {
			t.Fatalf("%q: no keys", s)
		}
		if s != "" && len(keys) != strings.Count(s, ",")+1 {
			t.Fatalf("%q: %d keys", s, len(keys))
		}
	})
}
