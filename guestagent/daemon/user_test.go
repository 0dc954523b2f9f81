package daemon

import (
	"fmt"
	"io/fs"
	"reflect"
	"strings"
	"testing"
)

func fakeFiles(files map[string]string) func(string) ([]byte, error) {
	return func(p string) ([]byte, error) {
		if s, ok := files[p]; ok {
			return []byte(s), nil
		}
		return nil, fmt.Errorf("open %s: %w", p, fs.ErrNotExist)
	}
}

func TestResolveUser(t *testing.T) {
	files := fakeFiles(map[string]string{
		"/etc/passwd": "root:x:0:0:root:/root:/bin/sh\n# comment\napp:x:1000:1000:app:/home/app:/bin/sh\nweb:x:33:33::/var/www:/bin/false\nbroken line\n",
		"/etc/group":  "root:x:0:\napp:x:1000:\nstaff:x:50:app,web\ndocker:x:999:app\nwww:x:33:\n",
	})
	tests := []struct {
		user     string
		groupAdd []string
		want     execUser
		wantErr  string
	}{
		{user: "", want: execUser{UID: 0, GID: 0, Home: "/root"}},
		{user: "app", want: execUser{UID: 1000, GID: 1000, Groups: []uint32{50, 999}, Home: "/home/app"}},
		{user: "1000", want: execUser{UID: 1000, GID: 1000, Groups: []uint32{50, 999}, Home: "/home/app"}},
		{user: "app:staff", want: execUser{UID: 1000, GID: 50, Home: "/home/app"}},
		{user: "1000:33", want: execUser{UID: 1000, GID: 33, Home: "/home/app"}},
		{user: "4242", want: execUser{UID: 4242, GID: 0, Home: "/"}},
		{user: "4242:4343", want: execUser{UID: 4242, GID: 4343, Home: "/"}},
		{user: "web", groupAdd: []string{"docker", "77"}, want: execUser{UID: 33, GID: 33, Groups: []uint32{50, 999, 77}, Home: "/var/www"}},
		{user: "nobody", wantErr: "unable to find user nobody: no matching entries in passwd file"},
		{user: "app:nogroup", wantErr: "unable to find group nogroup: no matching entries in group file"},
		{user: "app", groupAdd: []string{"nogroup"}, wantErr: "unable to find group nogroup"},
	}
	for _, tt := range tests {
		got, err := resolveUser(tt.user, tt.groupAdd, files)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%q: err %v, want %q", tt.user, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%q: got %+v %v, want %+v", tt.user, got, err, tt.want)
		}
	}
}

func TestResolveUserWithoutFiles(t *testing.T) {
	none := fakeFiles(nil)
	if u, err := resolveUser("", nil, none); err != nil || u.UID != 0 || u.Home != "/" {
		t.Errorf("root without passwd: %+v %v", u, err)
	}
	if u, err := resolveUser("123:456", nil, none); err != nil || u.UID != 123 || u.GID != 456 {
		t.Errorf("numeric without passwd: %+v %v", u, err)
	}
	if _, err := resolveUser("app", nil, none); err == nil || !strings.Contains(err.Error(), "no matching entries in passwd file") {
		t.Errorf("name without passwd: %v", err)
	}
	broken := func(string) ([]byte, error) { return nil, fs.ErrPermission }
	if _, err := resolveUser("", nil, broken); err == nil {
		t.Error("an unreadable passwd was ignored")
	}
}
