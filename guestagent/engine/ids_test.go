package engine

import "testing"

func TestShortID(t *testing.T) {
	for in, want := range map[string]string{
		"sha256:0123456789abcdef": "0123456789ab",
		"0123456789abcdef0123":    "0123456789ab",
		"abc":                     "abc",
		"sha256:abc":              "abc",
		"":                        "",
	} {
		if got := ShortID(in); got != want {
			t.Errorf("ShortID(%q) = %q, want %q", in, got, want)
		}
	}
}
