package engine

import "strings"

// ShortID is the 12-character form of a container or image ID, with or
// without its "sha256:" prefix, as docker prints them.
func ShortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
