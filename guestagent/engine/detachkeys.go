package engine

import (
	"fmt"
	"strings"
)

// ParseDetachKeys reads Docker's detach key format: comma-separated keys,
// each a single character or "ctrl-<c>" with c one of a-z @ [ \ ] ^ _
// (any case). "" is the default sequence, ctrl-p ctrl-q. A bad sequence
// is ErrInvalid. The API server parses the detachKeys of attach with it,
// and the engine those of exec create, whose bytes exec inspect returns
// as dockerd does.
func ParseDetachKeys(s string) ([]byte, error) {
	if s == "" {
		return []byte{16, 17}, nil
	}
	var keys []byte
	for _, k := range strings.Split(s, ",") {
		switch {
		case len(k) == 1:
			keys = append(keys, k[0])
		case len(k) == 6 && strings.EqualFold(k[:5], "ctrl-"):
			c := k[5]
			switch {
			case c >= 'a' && c <= 'z':
				keys = append(keys, c-'a'+1)
			case c >= 'A' && c <= 'Z':
				keys = append(keys, c-'A'+1)
			case c == '@':
				keys = append(keys, 0)
			case c >= '[' && c <= '_':
				keys = append(keys, c-'['+27)
			default:
				return nil, WithKind(ErrInvalid, fmt.Sprintf("Invalid detach keys (%s) provided: unknown character %q", s, k))
			}
		default:
			return nil, WithKind(ErrInvalid, fmt.Sprintf("Invalid detach keys (%s) provided: unknown key %q", s, k))
		}
	}
	return keys, nil
}
