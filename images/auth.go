package images

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"unicode/utf8"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/moby/moby/api/types/registry"
)

// maxAuthHeader bounds the X-Registry-Auth header we decode; real ones are
// a few hundred bytes (identity tokens a few KiB).
const maxAuthHeader = 64 << 10

// DecodeRegistryAuth decodes the X-Registry-Auth header the docker CLI
// sends with pull and push: base64url-encoded JSON of registry.AuthConfig.
// An empty header is anonymous access (a zero AuthConfig). Standard and
// unpadded base64 are accepted too, as some clients send them. When only
// the "auth" field (base64 "user:password") is set, Username and Password
// are filled from it.
func DecodeRegistryAuth(header string) (registry.AuthConfig, error) {
	header = strings.TrimSpace(header)
	if header == "" {
		return registry.AuthConfig{}, nil
	}
	if len(header) > maxAuthHeader {
		return registry.AuthConfig{}, invalidf("invalid X-Registry-Auth header: too long")
	}
	raw, err := decodeBase64(header)
	if err != nil {
		return registry.AuthConfig{}, withKind(ErrInvalid, err, "invalid X-Registry-Auth header")
	}
	var cfg registry.AuthConfig
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	if err := dec.Decode(&cfg); err != nil {
		return registry.AuthConfig{}, withKind(ErrInvalid, err, "invalid X-Registry-Auth header")
	}
	if dec.More() {
		return registry.AuthConfig{}, invalidf("invalid X-Registry-Auth header: trailing data")
	}
	if cfg.Auth != "" && cfg.Username == "" && cfg.Password == "" {
		userpass, err := decodeBase64(cfg.Auth)
		if err != nil {
			return registry.AuthConfig{}, withKind(ErrInvalid, err, "invalid X-Registry-Auth header: bad auth field")
		}
		user, pass, ok := strings.Cut(string(userpass), ":")
		if !ok || !utf8.Valid(userpass) {
			return registry.AuthConfig{}, invalidf("invalid X-Registry-Auth header: auth field is not user:password")
		}
		cfg.Username, cfg.Password = user, pass
	}
	return cfg, nil
}

func decodeBase64(s string) ([]byte, error) {
	var firstErr error
	for _, enc := range []*base64.Encoding{base64.URLEncoding, base64.RawURLEncoding, base64.StdEncoding, base64.RawStdEncoding} {
		b, err := enc.DecodeString(s)
		if err == nil {
			return b, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return nil, firstErr
}

// EncodeRegistryAuth is the inverse of DecodeRegistryAuth, as the docker
// CLI encodes the header (for tests and clients).
func EncodeRegistryAuth(cfg registry.AuthConfig) (string, error) {
	b, err := json.Marshal(cfg)
	if err != nil {
		return "", err
	}
	return base64.URLEncoding.EncodeToString(b), nil
}

// Authenticator turns decoded registry credentials into what the registry
// client uses; no credentials means anonymous.
func Authenticator(cfg registry.AuthConfig) authn.Authenticator {
	if cfg.Username == "" && cfg.Password == "" && cfg.Auth == "" && cfg.IdentityToken == "" && cfg.RegistryToken == "" {
		return authn.Anonymous
	}
	return authn.FromConfig(authn.AuthConfig{
		Username:      cfg.Username,
		Password:      cfg.Password,
		Auth:          cfg.Auth,
		IdentityToken: cfg.IdentityToken,
		RegistryToken: cfg.RegistryToken,
	})
}
