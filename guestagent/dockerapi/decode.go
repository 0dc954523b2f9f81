package dockerapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthvm/berth/images"
)

// maxJSONBody bounds JSON request bodies (auth configs, and later
// container configs); archives are streamed instead.
const maxJSONBody = 4 << 20

// maxQueryValue bounds one query parameter value (filters included).
const maxQueryValue = 64 << 10

// decodeJSON reads one JSON value of at most maxJSONBody bytes into v.
// Unknown fields are accepted (newer clients send them, as dockerd
// tolerates) but malformed JSON, trailing data and oversize bodies are a
// clear 400. An empty body leaves v as is when allowEmpty.
func decodeJSON(body io.Reader, v any, allowEmpty bool) error {
	if body == nil {
		if allowEmpty {
			return nil
		}
		return invalidf("request body is empty: a JSON object was expected")
	}
	data, err := io.ReadAll(io.LimitReader(body, maxJSONBody+1))
	if err != nil {
		return invalidf("reading request body: %v", err)
	}
	return decodeJSONBytes(data, v, allowEmpty)
}

func decodeJSONBytes(data []byte, v any, allowEmpty bool) error {
	if len(data) > maxJSONBody {
		return invalidf("request body is larger than %d bytes", maxJSONBody)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		if allowEmpty {
			return nil
		}
		return invalidf("request body is empty: a JSON object was expected")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return invalidf("invalid JSON: field %q: cannot use %s as %s", typeErr.Field, typeErr.Value, typeErr.Type)
		}
		return invalidf("invalid JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return invalidf("invalid JSON: unexpected data after the object")
	}
	return nil
}

// query is the request's query, parsed once, with checked values.
type query struct{ v url.Values }

func parseQuery(r *http.Request) (query, error) {
	v, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return query{}, invalidf("invalid query: %v", err)
	}
	for k, vs := range v {
		for _, s := range vs {
			if len(s) > maxQueryValue {
				return query{}, invalidf("query parameter %q is too long", k)
			}
		}
	}
	return query{v}, nil
}

func (q query) get(k string) string { return q.v.Get(k) }

func (q query) all(k string) []string { return q.v[k] }

// bool reads a boolean parameter as dockerd does: absent, "", "0",
// "no", "false" and "none" are false, anything else is true.
func (q query) bool(k string) bool {
	s := strings.ToLower(strings.TrimSpace(q.v.Get(k)))
	return !(s == "" || s == "0" || s == "no" || s == "false" || s == "none")
}

// filters decodes the "filters" parameter (both JSON shapes).
func (q query) filters() (images.Filters, error) {
	f, err := images.ParseFilters(q.v.Get("filters"))
	if err != nil {
		return nil, err // already ErrInvalid
	}
	return f, nil
}

// int reads an integer parameter; absent is def.
func (q query) int(k string, def int) (int, error) {
	s := q.v.Get(k)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, invalidf("invalid value for %s: %q", k, s)
	}
	return n, nil
}

// parsePlatform reads "os[/arch[/variant]]"; "" is nil (the default).
func parsePlatform(s string) (*ocispec.Platform, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	if strings.HasPrefix(s, "{") {
		// API 1.46+ sends an OCI platform as JSON on some endpoints.
		var p ocispec.Platform
		if err := decodeJSONBytes([]byte(s), &p, false); err != nil {
			return nil, err
		}
		if p.OS == "" {
			return nil, invalidf("invalid platform %q: no OS", s)
		}
		return &p, nil
	}
	parts := strings.Split(strings.ToLower(s), "/")
	if len(parts) > 3 {
		return nil, invalidf("invalid platform %q: want os[/arch[/variant]]", s)
	}
	for _, p := range parts {
		if p == "" || strings.ContainsFunc(p, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.')
		}) {
			return nil, invalidf("invalid platform %q", s)
		}
	}
	p := &ocispec.Platform{OS: parts[0]}
	if len(parts) > 1 {
		p.Architecture = parts[1]
	}
	if len(parts) > 2 {
		p.Variant = parts[2]
	}
	return p, nil
}

// parseEventTime reads `since`/`until` of GET /events: unix seconds with
// an optional fraction of nanoseconds ("1700000000.123456789"), as the
// docker CLI sends them. "" is the zero time.
func parseEventTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	secs, frac, hasFrac := strings.Cut(s, ".")
	if !allDigits(secs) || (hasFrac && !allDigits(frac)) {
		return time.Time{}, invalidf("invalid timestamp %q: want unix seconds[.nanoseconds]", s)
	}
	sec, err := strconv.ParseInt(secs, 10, 64)
	if err != nil || sec < 0 || sec > 1<<40 {
		return time.Time{}, invalidf("invalid timestamp %q: want unix seconds[.nanoseconds]", s)
	}
	var ns int64
	if hasFrac {
		if frac == "" || len(frac) > 9 {
			return time.Time{}, invalidf("invalid timestamp %q: want unix seconds[.nanoseconds]", s)
		}
		n, err := strconv.ParseInt(frac, 10, 64)
		if err != nil || n < 0 {
			return time.Time{}, invalidf("invalid timestamp %q: want unix seconds[.nanoseconds]", s)
		}
		for i := len(frac); i < 9; i++ {
			n *= 10
		}
		ns = n
	}
	return time.Unix(sec, ns), nil
}

func allDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}
