package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A cgo package for darwin, as vm/vz is: it only type-checks with import "C"
// faked, and its linux file must not be looked at.
var basePkg = map[string]string{
	"go.mod": "module example.com/tc\n\ngo 1.26\n",
	"hv/doc.go": `package hv
`,
	"hv/hv_darwin.go": `//go:build darwin

package hv

/*
#include <stdint.h>
static int answer(void) { return 42; }
*/
import "C"

// Machine is a VM.
type Machine struct{ cpus int }

// New makes a machine.
func New(cpus int) (*Machine, error) {
	_ = int(C.answer())
	return &Machine{cpus: cpus}, nil
}

// Start starts it.
func (m *Machine) Start() error { return nil }
`,
	"hv/hv_linux.go": `package hv

func broken() int { return "linux-only code is not checked for darwin" }
`,
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  []string // substrings of reported errors; none when empty
	}{
		{
			name: "clean",
			files: map[string]string{
				"user/user_darwin.go": `package user

import "example.com/tc/hv"

func Boot() error {
	m, err := hv.New(2)
	if err != nil {
		return err
	}
	return m.Start()
}
`,
			},
		},
		{
			name: "wrong call in an importer",
			files: map[string]string{
				"user/user_darwin.go": `package user

import "example.com/tc/hv"

func Boot() error {
	m, err := hv.New("two")
	if err != nil {
		return err
	}
	return m.Start(1)
}
`,
			},
			want: []string{`user_darwin.go:6:19: cannot use "two"`, "user_darwin.go:10:17: too many arguments"},
		},
		{
			name: "wrong call in the cgo package itself",
			files: map[string]string{
				"hv/extra_darwin.go": `package hv

import "C"

import "strings"

func extra() string { return strings.Repeat(3, "x") }
`,
			},
			want: []string{"extra_darwin.go:7:45: cannot use 3"},
		},
		{
			name: "darwin-only mistake that linux builds never see",
			files: map[string]string{
				"user/user_darwin.go": `package user

import "example.com/tc/hv"

var m hv.Machine = hv.New(1)
`,
			},
			want: []string{"user_darwin.go:5:20: multiple-value hv.New(1)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, content := range basePkg {
				writeFile(t, filepath.Join(dir, name), content)
			}
			for name, content := range tt.files {
				writeFile(t, filepath.Join(dir, name), content)
			}
			for _, arch := range []string{"arm64", "amd64"} {
				res, err := check(context.Background(), dir, []string{"./hv/..."}, "darwin", arch)
				if err != nil {
					t.Fatal(err)
				}
				if len(res.Checked) == 0 || res.Checked[0] != "example.com/tc/hv" {
					t.Fatalf("%s: checked %v", arch, res.Checked)
				}
				var got []string
				for _, e := range res.Errors {
					got = append(got, e.Error())
				}
				all := strings.Join(got, "\n")
				if len(tt.want) == 0 && len(got) > 0 {
					t.Errorf("%s: unexpected errors:\n%s", arch, all)
				}
				for _, w := range tt.want {
					if !strings.Contains(all, w) {
						t.Errorf("%s: no error containing %q in:\n%s", arch, w, all)
					}
				}
				if strings.Contains(all, "linux-only") {
					t.Errorf("%s: checked a linux file for darwin:\n%s", arch, all)
				}
			}
		})
	}
}

// TestBerthDarwinCode checks the real thing: vm/vz and its importers.
func TestBerthDarwinCode(t *testing.T) {
	if testing.Short() {
		t.Skip("type-checks the standard library from source")
	}
	res, err := check(context.Background(), filepath.Join("..", ".."), []string{"./vm/vz/..."}, "darwin", "arm64")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range res.Errors {
		if strings.Contains(e.Error(), "/vm/") {
			t.Error(e)
		}
	}
	if len(res.Checked) == 0 {
		t.Fatal("vm/vz was not checked")
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
