package daemon

import (
	"errors"
	"strings"
	"testing"

	"github.com/berthvm/berth/guestagent/engine"
)

func TestNormalizeName(t *testing.T) {
	for in, want := range map[string]string{"web": "/web", "/web": "/web", "a.b-c_d": "/a.b-c_d", "W1": "/W1"} {
		if got, err := normalizeName(in); err != nil || got != want {
			t.Errorf("normalizeName(%q) = %q %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "a", "/a", "-web", "we b", "web/x", "_x"} {
		if _, err := normalizeName(bad); !errors.Is(err, engine.ErrInvalid) {
			t.Errorf("normalizeName(%q): %v, want ErrInvalid", bad, err)
		}
	}
}

func TestNewID(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		id := newID()
		if len(id) != 64 || !isHexPrefix(id) || seen[id] {
			t.Fatalf("bad or repeated ID %q", id)
		}
		allDigits := strings.Trim(id[:12], "0123456789") == ""
		if allDigits {
			t.Fatalf("ID %q has an all-digit short form", id)
		}
		seen[id] = true
	}
}

func TestRandomName(t *testing.T) {
	taken := map[string]bool{}
	for range 50 {
		n := randomName(func(s string) bool { return taken[s] })
		if !strings.HasPrefix(n, "/") || !strings.Contains(n, "_") || taken[n] {
			t.Fatalf("random name %q", n)
		}
		if _, err := normalizeName(n); err != nil {
			t.Fatalf("random name %q is not valid: %v", n, err)
		}
		taken[n] = true
	}
	// Retries append a digit.
	calls := 0
	n := randomName(func(string) bool { calls++; return calls < 3 })
	if last := n[len(n)-1]; last < '0' || last > '9' {
		t.Errorf("retried name %q has no digit", n)
	}
}
