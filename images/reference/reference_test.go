package reference

import (
	"errors"
	"strings"
	"testing"
)

const hex64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestParseDockerRef(t *testing.T) {
	tests := []struct {
		in       string
		full     string
		familiar string
		wantErr  bool
	}{
		{in: "busybox", full: "docker.io/library/busybox:latest", familiar: "busybox:latest"},
		{in: "busybox:1.36", full: "docker.io/library/busybox:1.36", familiar: "busybox:1.36"},
		{in: "library/busybox", full: "docker.io/library/busybox:latest", familiar: "busybox:latest"},
		{in: "docker.io/busybox", full: "docker.io/library/busybox:latest", familiar: "busybox:latest"},
		{in: "index.docker.io/library/busybox", full: "docker.io/library/busybox:latest", familiar: "busybox:latest"},
		{in: "user/app:v1", full: "docker.io/user/app:v1", familiar: "user/app:v1"},
		{in: "docker.io/library/a/b", full: "docker.io/library/a/b:latest", familiar: "library/a/b:latest"},
		{in: "localhost:5000/x", full: "localhost:5000/x:latest", familiar: "localhost:5000/x:latest"},
		{in: "localhost/x:t", full: "localhost/x:t", familiar: "localhost/x:t"},
		{in: "127.0.0.1:5000/a/b-c__d.e:T_1.x", full: "127.0.0.1:5000/a/b-c__d.e:T_1.x", familiar: "127.0.0.1:5000/a/b-c__d.e:T_1.x"},
		{in: "[::1]:5000/x", full: "[::1]:5000/x:latest", familiar: "[::1]:5000/x:latest"},
		{in: "Registry.Example/x", full: "Registry.Example/x:latest", familiar: "Registry.Example/x:latest"},
		{in: "localhost:5000/x@sha256:" + hex64, full: "localhost:5000/x@sha256:" + hex64, familiar: "localhost:5000/x@sha256:" + hex64},
		{in: "busybox:1@sha256:" + hex64, full: "docker.io/library/busybox@sha256:" + hex64, familiar: "busybox@sha256:" + hex64},
		{in: "localhost:5000", full: "docker.io/library/localhost:5000", familiar: "localhost:5000"},
		{in: "", wantErr: true},
		{in: "Busybox", wantErr: true},
		{in: "example.com/Upper", wantErr: true},
		{in: "busybox:", wantErr: true},
		{in: ":tag", wantErr: true},
		{in: "busybox:-bad", wantErr: true},
		{in: "busybox:" + strings.Repeat("a", 129), wantErr: true},
		{in: "bad..dots", wantErr: true},
		{in: "a/-b", wantErr: true},
		{in: "a//b", wantErr: true},
		{in: "a/b/", wantErr: true},
		{in: "host:port/x", wantErr: true},
		{in: "-host.com/x", wantErr: true},
		{in: "x@sha256:abc", wantErr: true},
		{in: "x@md5:" + hex64, wantErr: true},
		{in: hex64, wantErr: true},
		{in: "a___b", wantErr: true},
		{in: "a_-b", wantErr: true},
		{in: "a--b", full: "docker.io/library/a--b:latest", familiar: "a--b:latest"},
		{in: strings.Repeat("a", 256), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			r, err := ParseDockerRef(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ParseDockerRef(%q) = %v, want error", tt.in, r)
				}
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("error %v does not wrap ErrInvalid", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseDockerRef(%q): %v", tt.in, err)
			}
			if got := r.String(); got != tt.full {
				t.Errorf("String() = %q, want %q", got, tt.full)
			}
			if got := r.FamiliarString(); got != tt.familiar {
				t.Errorf("FamiliarString() = %q, want %q", got, tt.familiar)
			}
		})
	}
}

func TestParseKeepsMissingTag(t *testing.T) {
	r, err := Parse("busybox")
	if err != nil {
		t.Fatal(err)
	}
	if r.Tag != "" || r.Digest != "" {
		t.Fatalf("Parse(busybox) = %+v, want no tag or digest", r)
	}
	if r.String() != "docker.io/library/busybox" {
		t.Fatalf("String() = %q", r.String())
	}
}

func TestMatchFamiliar(t *testing.T) {
	tests := []struct {
		ref, pattern string
		want         bool
	}{
		{"busybox:latest", "busybox", true},
		{"busybox:latest", "busybox:*", true},
		{"busybox:latest", "busy*", true},
		{"busybox:latest", "alpine", false},
		{"localhost:5000/a/b:1", "localhost:5000/a/*", true},
		{"localhost:5000/a/b:1", "*/a/b", true},
		{"localhost:5000/a/b:1", "*/b", false},
		{"user/app:v1", "user/*:v1", true},
	}
	for _, tt := range tests {
		r, err := ParseDockerRef(tt.ref)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.MatchFamiliar(tt.pattern); got != tt.want {
			t.Errorf("%s match %q = %v, want %v", tt.ref, tt.pattern, got, tt.want)
		}
	}
}

func FuzzParseReference(f *testing.F) {
	for _, s := range []string{
		"busybox", "busybox:latest", "docker.io/library/busybox", "localhost:5000/x@sha256:" + hex64,
		"[::1]:5000/a/b:c", "a/b/c_d__e--f.g:h", "Foo/bar", "x:1@sha256:" + hex64, hex64,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse(%q) error %v does not wrap ErrInvalid", s, err)
			}
			return
		}
		if r.Domain == "" || r.Path == "" {
			t.Fatalf("Parse(%q) = %+v: empty domain or path", s, r)
		}
		// The normalised and familiar forms must parse back to the same value.
		for _, form := range []string{r.String(), r.FamiliarString()} {
			again, err := Parse(form)
			if err != nil {
				t.Fatalf("Parse(%q) ok, but its form %q does not parse: %v", s, form, err)
			}
			if again != r {
				t.Fatalf("Parse(%q) = %+v, re-parse of %q = %+v", s, r, form, again)
			}
		}
		d, err := ParseDockerRef(s)
		if err != nil {
			t.Fatalf("Parse ok but ParseDockerRef(%q): %v", s, err)
		}
		if (d.Tag == "") == (d.Digest == "") {
			t.Fatalf("ParseDockerRef(%q) = %+v: want exactly one of tag and digest", s, d)
		}
	})
}
