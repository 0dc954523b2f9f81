package daemon

import (
	"errors"
	"strings"
	"testing"

	"github.com/berthvm/berth/guestagent/engine"
)

func TestLookup(t *testing.T) {
	d := &Daemon{byID: map[string]*ctr{}, names: map[string]string{}}
	add := func(id, name string) {
		d.byID[id] = &ctr{id: id}
		d.names[name] = id
	}
	add("abc123"+strings.Repeat("0", 58), "/web")
	add("abd456"+strings.Repeat("0", 58), "/db")
	add("ffff00"+strings.Repeat("1", 58), "/abc123") // a name that looks like an ID prefix
	tests := []struct {
		q      string
		wantID string
		kind   error
	}{
		{"web", "abc123", nil},
		{"/web", "abc123", nil},
		{"abd", "abd456", nil},
		{"abc123" + strings.Repeat("0", 58), "abc123", nil},
		{"abc123", "ffff00", nil}, // names win over prefixes, as in dockerd
		{"ab", "", engine.ErrInvalid},
		{"nothing", "", engine.ErrNotFound},
		{"0000", "", engine.ErrNotFound},
		{"", "", engine.ErrInvalid},
	}
	for _, tt := range tests {
		c, err := d.lookup(tt.q)
		if tt.kind != nil {
			if !errors.Is(err, tt.kind) {
				t.Errorf("lookup(%q) = %v, want %v", tt.q, err, tt.kind)
			}
			continue
		}
		if err != nil || !strings.HasPrefix(c.id, tt.wantID) {
			t.Errorf("lookup(%q) = %v %v, want %s", tt.q, c, err, tt.wantID)
		}
	}
	if _, err := d.lookup("nothing"); err == nil || err.Error() != "No such container: nothing" {
		t.Errorf("not found text: %v", err)
	}
}
