package images

import (
	"encoding/base64"
	"errors"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/moby/moby/api/types/registry"
)

func TestDecodeRegistryAuth(t *testing.T) {
	b64 := func(s string) string { return base64.URLEncoding.EncodeToString([]byte(s)) }
	tests := []struct {
		name    string
		header  string
		want    registry.AuthConfig
		wantErr bool
	}{
		{name: "empty", header: ""},
		{name: "empty object", header: b64("{}")},
		{name: "user password", header: b64(`{"username":"u","password":"p","serveraddress":"localhost:5000"}`),
			want: registry.AuthConfig{Username: "u", Password: "p", ServerAddress: "localhost:5000"}},
		{name: "identity token", header: b64(`{"identitytoken":"tok"}`), want: registry.AuthConfig{IdentityToken: "tok"}},
		{name: "auth field", header: b64(`{"auth":"` + base64.StdEncoding.EncodeToString([]byte("me:se:cret")) + `"}`),
			want: registry.AuthConfig{Auth: base64.StdEncoding.EncodeToString([]byte("me:se:cret")), Username: "me", Password: "se:cret"}},
		{name: "std encoding", header: base64.StdEncoding.EncodeToString([]byte(`{"username":"ü>?"}`)), want: registry.AuthConfig{Username: "ü>?"}},
		{name: "unpadded", header: base64.RawURLEncoding.EncodeToString([]byte(`{"username":"a"}`)), want: registry.AuthConfig{Username: "a"}},
		{name: "not base64", header: "!!!not base64!!!", wantErr: true},
		{name: "not json", header: b64("user:pass"), wantErr: true},
		{name: "trailing data", header: b64(`{} {}`), wantErr: true},
		{name: "bad auth field", header: b64(`{"auth":"nocolon"}`), wantErr: true},
		{name: "wrong type", header: b64(`{"username":1}`), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeRegistryAuth(tt.header)
			if tt.wantErr {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("err = %v, want ErrInvalid", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestAuthenticator(t *testing.T) {
	if Authenticator(registry.AuthConfig{}) != authn.Anonymous {
		t.Fatal("empty config is not anonymous")
	}
	a := Authenticator(registry.AuthConfig{Username: "u", Password: "p"})
	cfg, err := a.Authorization()
	if err != nil || cfg.Username != "u" || cfg.Password != "p" {
		t.Fatalf("Authorization = %+v, %v", cfg, err)
	}
}

func FuzzDecodeRegistryAuth(f *testing.F) {
	for _, s := range []string{"", "e30=", "eyJ1c2VybmFtZSI6InUiLCJwYXNzd29yZCI6InAifQ==", "eyJhdXRoIjoiZFRwdyJ9", "!!", "{}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		cfg, err := DecodeRegistryAuth(header)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			return
		}
		// What decodes must survive the CLI's encoding unchanged.
		enc, err := EncodeRegistryAuth(cfg)
		if err != nil {
			t.Fatal(err)
		}
		again, err := DecodeRegistryAuth(enc)
		if err != nil {
			t.Fatalf("re-decoding %q: %v", enc, err)
		}
		if again != cfg {
			t.Fatalf("round trip changed %+v to %+v", cfg, again)
		}
		_ = Authenticator(cfg)
	})
}
