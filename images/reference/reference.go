// Package reference parses and normalises image references the way the
// docker CLI and dockerd do: "busybox" means docker.io/library/busybox:latest,
// "localhost:5000/x@sha256:..." names a digest in a local registry.
//
// It owns only the string grammar and its normalised and "familiar" (short,
// as `docker images` shows it) forms. It does not talk to registries, resolve
// image IDs or know which references exist in a store: see package images.
package reference

import (
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/opencontainers/go-digest"

	// Register the hash functions go-digest validates against.
	_ "crypto/sha256"
	_ "crypto/sha512"
)

const (
	// DefaultDomain is the registry of references that name none.
	DefaultDomain = "docker.io"
	// DefaultTag is the tag of references that name neither tag nor digest.
	DefaultTag = "latest"

	legacyDefaultDomain = "index.docker.io"
	officialRepoPrefix  = "library/"
	maxNameLength       = 255
	maxTagLength        = 128
)

// ErrInvalid is wrapped by every parse error, so callers can map them to
// "invalid parameter" in one place.
var ErrInvalid = errors.New("invalid reference format")

// Reference is a parsed, normalised image reference. Domain and Path are
// always set; Tag and Digest are empty when the input named none.
type Reference struct {
	Domain string        // registry host[:port], e.g. "docker.io", "localhost:5000"
	Path   string        // repository path, e.g. "library/busybox"
	Tag    string        // e.g. "latest"; empty when not given
	Digest digest.Digest // e.g. "sha256:..."; empty when not given
}

// Parse parses s and normalises its name (default domain, "library/" for
// official images) but leaves Tag empty when s names no tag. Use
// ParseDockerRef for the form a pull uses.
func Parse(s string) (Reference, error) {
	if s == "" {
		return Reference{}, fmt.Errorf("%w: empty reference", ErrInvalid)
	}
	var r Reference
	name := s
	if i := strings.IndexByte(s, '@'); i >= 0 {
		name = s[:i]
		d := digest.Digest(s[i+1:])
		if err := d.Validate(); err != nil {
			return Reference{}, fmt.Errorf("%w: %q: bad digest: %v", ErrInvalid, s, err)
		}
		r.Digest = d
	}
	// A tag is a ':' after the last '/': "localhost:5000/x" has a port, not a tag.
	if i := strings.LastIndexByte(name, ':'); i >= 0 && i > strings.LastIndexByte(name, '/') {
		r.Tag = name[i+1:]
		name = name[:i]
		if !validTag(r.Tag) {
			return Reference{}, fmt.Errorf("%w: %q: bad tag %q", ErrInvalid, s, r.Tag)
		}
	}
	if name == "" {
		return Reference{}, fmt.Errorf("%w: %q: empty name", ErrInvalid, s)
	}
	domain, remote := splitDomain(name)
	if domain != "" && !validDomain(domain) {
		return Reference{}, fmt.Errorf("%w: %q: bad registry host %q", ErrInvalid, s, domain)
	}
	if strings.ToLower(remote) != remote {
		return Reference{}, fmt.Errorf("%w: %q: repository name must be lowercase", ErrInvalid, s)
	}
	if !validPath(remote) {
		return Reference{}, fmt.Errorf("%w: %q", ErrInvalid, s)
	}
	if domain == "" {
		if isHexID(remote) {
			return Reference{}, fmt.Errorf("%w: invalid repository name (%s), cannot specify 64-byte hexadecimal strings", ErrInvalid, remote)
		}
		domain = DefaultDomain
	}
	if domain == legacyDefaultDomain {
		domain = DefaultDomain
	}
	if domain == DefaultDomain && !strings.Contains(remote, "/") {
		remote = officialRepoPrefix + remote
	}
	r.Domain, r.Path = domain, remote
	if len(r.Name()) > maxNameLength {
		return Reference{}, fmt.Errorf("%w: repository name must not be more than %d characters", ErrInvalid, maxNameLength)
	}
	return r, nil
}

// ParseDockerRef parses s and fills in what a pull needs: the "latest" tag
// when s names neither tag nor digest. A digest wins over a tag, as in
// dockerd, so "x:1@sha256:..." becomes "x@sha256:...".
func ParseDockerRef(s string) (Reference, error) {
	r, err := Parse(s)
	if err != nil {
		return Reference{}, err
	}
	switch {
	case r.Digest != "":
		r.Tag = ""
	case r.Tag == "":
		r.Tag = DefaultTag
	}
	return r, nil
}

// splitDomain splits name into registry host and repository path the way
// the docker CLI does: the first component is a host only when it has a '.'
// or ':', is "localhost", or has upper-case letters. domain is empty when
// the name has none.
func splitDomain(name string) (domain, remote string) {
	i := strings.IndexByte(name, '/')
	if i < 0 {
		return "", name
	}
	first := name[:i]
	if !strings.ContainsAny(first, ".:") && first != "localhost" && strings.ToLower(first) == first {
		return "", name
	}
	return first, name[i+1:]
}

// Name is the full repository name, e.g. "docker.io/library/busybox".
func (r Reference) Name() string { return r.Domain + "/" + r.Path }

// String is the full normalised form, e.g. "docker.io/library/busybox:latest".
func (r Reference) String() string { return r.Name() + r.suffix() }

// FamiliarName is the short repository name `docker images` shows:
// "busybox", "user/app", "localhost:5000/x".
func (r Reference) FamiliarName() string {
	if r.Domain != DefaultDomain {
		return r.Name()
	}
	if rest, ok := strings.CutPrefix(r.Path, officialRepoPrefix); ok && !strings.Contains(rest, "/") {
		return rest
	}
	return r.Path
}

// FamiliarString is the short form with tag and digest, e.g. "busybox:latest".
func (r Reference) FamiliarString() string { return r.FamiliarName() + r.suffix() }

// Repository returns r without tag and digest.
func (r Reference) Repository() Reference { return Reference{Domain: r.Domain, Path: r.Path} }

// WithTag returns r's repository with tag t.
func (r Reference) WithTag(t string) Reference {
	return Reference{Domain: r.Domain, Path: r.Path, Tag: t}
}

// WithDigest returns r's repository with digest d.
func (r Reference) WithDigest(d digest.Digest) Reference {
	return Reference{Domain: r.Domain, Path: r.Path, Digest: d}
}

// MatchFamiliar reports whether the glob pattern (path.Match syntax) matches
// r's familiar string or familiar name, as `docker images --filter
// reference=...` does.
func (r Reference) MatchFamiliar(pattern string) bool {
	if ok, _ := path.Match(pattern, r.FamiliarString()); ok {
		return true
	}
	ok, _ := path.Match(pattern, r.FamiliarName())
	return ok
}

func (r Reference) suffix() string {
	s := ""
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	if r.Digest != "" {
		s += "@" + string(r.Digest)
	}
	return s
}

// validTag matches [\w][\w.-]{0,127}.
func validTag(t string) bool {
	if t == "" || len(t) > maxTagLength {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		word := c == '_' || isAlnum(c) || (c >= 'A' && c <= 'Z')
		if !word && (i == 0 || (c != '.' && c != '-')) {
			return false
		}
	}
	return true
}

// validPath checks slash-separated components of [a-z0-9]+ joined by
// "." , "_", "__" or runs of "-".
func validPath(p string) bool {
	if p == "" {
		return false
	}
	for comp := range strings.SplitSeq(p, "/") {
		if !validComponent(comp) {
			return false
		}
	}
	return true
}

func validComponent(c string) bool {
	if c == "" || !isAlnum(c[0]) || !isAlnum(c[len(c)-1]) {
		return false
	}
	for i := 0; i < len(c); {
		if isAlnum(c[i]) {
			i++
			continue
		}
		// A separator: ".", "_", "__" or one or more "-", then an alnum.
		j := i
		switch c[i] {
		case '.':
			j++
		case '_':
			j++
			if j < len(c) && c[j] == '_' {
				j++
			}
		case '-':
			for j < len(c) && c[j] == '-' {
				j++
			}
		default:
			return false
		}
		if j >= len(c) || !isAlnum(c[j]) {
			return false
		}
		i = j
	}
	return true
}

// validDomain checks host[:port] where host is dot-separated labels of
// [a-zA-Z0-9-] (not starting or ending with '-') or a bracketed IPv6 address.
func validDomain(d string) bool {
	host, port := d, ""
	if strings.HasPrefix(d, "[") {
		end := strings.IndexByte(d, ']')
		if end < 0 {
			return false
		}
		host, port = d[1:end], d[end+1:]
		if !validIPv6(host) {
			return false
		}
		if port != "" {
			p, ok := strings.CutPrefix(port, ":")
			return ok && validPort(p)
		}
		return true
	}
	if i := strings.LastIndexByte(d, ':'); i >= 0 {
		host, port = d[:i], d[i+1:]
		if !validPort(port) {
			return false
		}
	}
	if host == "" {
		return false
	}
	for label := range strings.SplitSeq(host, ".") {
		if label == "" || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !isAlnum(c) && !(c >= 'A' && c <= 'Z') && c != '-' {
				return false
			}
		}
	}
	return true
}

func validPort(p string) bool {
	if p == "" || len(p) > 5 {
		return false
	}
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
	}
	return true
}

func validIPv6(h string) bool {
	if h == "" || strings.Count(h, ":") < 2 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= '0' && c <= '9') && !(c >= 'a' && c <= 'f') && !(c >= 'A' && c <= 'F') && c != ':' && c != '.' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') }

// isHexID reports whether s looks like a full image ID (64 lower-case hex).
func isHexID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')) {
			return false
		}
	}
	return true
}
