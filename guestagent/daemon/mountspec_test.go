package daemon

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"

	"github.com/berthvm/berth/guestagent/engine"
)

func TestParseBind(t *testing.T) {
	tests := []struct {
		spec    string
		want    mountPoint
		wantErr string
	}{
		{spec: "/data", want: mountPoint{Type: mount.TypeVolume, Destination: "/data", RW: true, Anonymous: true}},
		{spec: "vol:/data", want: mountPoint{Type: mount.TypeVolume, Name: "vol", Destination: "/data", RW: true}},
		{spec: "vol:/data:ro,nocopy", want: mountPoint{Type: mount.TypeVolume, Name: "vol", Destination: "/data", Mode: "ro,nocopy", NoCopy: true}},
		{spec: "/host/dir/:/mnt:ro,rshared", want: mountPoint{Type: mount.TypeBind, Source: "/host/dir", Destination: "/mnt", Mode: "ro,rshared", Propagation: mount.PropagationRShared, CreateSource: true}},
		{spec: "/host:/mnt:z", want: mountPoint{Type: mount.TypeBind, Source: "/host", Destination: "/mnt", RW: true, Mode: "z", Propagation: mount.PropagationRPrivate, CreateSource: true}},
		{spec: "/data:ro", wantErr: "invalid volume specification"},
		{spec: "vol:rel", wantErr: "must be absolute"},
		{spec: "vol:/", wantErr: "can't be '/'"},
		{spec: "a:/b:c:d", wantErr: "invalid volume specification"},
		{spec: "vol:/data:rw,ro", wantErr: "invalid mode"},
		{spec: "vol:/data:bogus", wantErr: "invalid mode"},
		{spec: "/host:/mnt:nocopy", wantErr: "nocopy is only valid for volumes"},
		{spec: "vol:/mnt:rshared", wantErr: "propagation is only valid for bind mounts"},
		{spec: "./rel:/mnt", wantErr: "invalid characters for a local volume name"},
		{spec: "x:/mnt", wantErr: "invalid characters"},
	}
	for _, tt := range tests {
		got, err := parseBind(tt.spec)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, engine.ErrInvalid) {
				t.Errorf("%q: err %v, want %q", tt.spec, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%q:\n got %+v %v\nwant %+v", tt.spec, got, err, tt.want)
		}
	}
}

func TestParseMount(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		m       mount.Mount
		want    mountPoint
		wantErr string
	}{
		{name: "bind", m: mount.Mount{Type: mount.TypeBind, Source: dir, Target: "/m", ReadOnly: true},
			want: mountPoint{Type: mount.TypeBind, Source: dir, Destination: "/m", Propagation: mount.PropagationRPrivate}},
		{name: "bind missing source", m: mount.Mount{Type: mount.TypeBind, Source: dir + "/nope", Target: "/m"}, wantErr: "bind source path does not exist"},
		{name: "bind create source", m: mount.Mount{Type: mount.TypeBind, Source: dir + "/nope", Target: "/m", BindOptions: &mount.BindOptions{CreateMountpoint: true, NonRecursive: true}},
			want: mountPoint{Type: mount.TypeBind, Source: dir + "/nope", Destination: "/m", RW: true, Propagation: mount.PropagationRPrivate, CreateSource: true, NonRecursive: true}},
		{name: "anonymous volume", m: mount.Mount{Type: mount.TypeVolume, Target: "/v"},
			want: mountPoint{Type: mount.TypeVolume, Destination: "/v", RW: true, Anonymous: true}},
		{name: "volume subpath", m: mount.Mount{Type: mount.TypeVolume, Source: "vol", Target: "/v", VolumeOptions: &mount.VolumeOptions{Subpath: "a/b", NoCopy: true}},
			want: mountPoint{Type: mount.TypeVolume, Name: "vol", Destination: "/v", RW: true, Subpath: "a/b", NoCopy: true}},
		{name: "volume subpath escape", m: mount.Mount{Type: mount.TypeVolume, Source: "vol", Target: "/v", VolumeOptions: &mount.VolumeOptions{Subpath: "../x"}}, wantErr: "subpath"},
		{name: "volume driver", m: mount.Mount{Type: mount.TypeVolume, Source: "vol", Target: "/v", VolumeOptions: &mount.VolumeOptions{DriverConfig: &mount.Driver{Name: "nfs"}}}, wantErr: "not supported"},
		{name: "tmpfs", m: mount.Mount{Type: mount.TypeTmpfs, Target: "/t", TmpfsOptions: &mount.TmpfsOptions{SizeBytes: 1 << 20, Mode: 0o1777, Options: [][]string{{"exec"}}}},
			want: mountPoint{Type: mount.TypeTmpfs, Destination: "/t", RW: true, TmpfsOptions: []string{"rw", "nosuid", "nodev", "size=1048576", "mode=1777", "exec"}}},
		{name: "tmpfs with source", m: mount.Mount{Type: mount.TypeTmpfs, Source: "x", Target: "/t"}, wantErr: "Source must not be specified"},
		{name: "bind options on a volume", m: mount.Mount{Type: mount.TypeVolume, Target: "/t", BindOptions: &mount.BindOptions{}}, wantErr: "bind options"},
		{name: "npipe", m: mount.Mount{Type: mount.TypeNamedPipe, Source: "x", Target: "/t"}, wantErr: "not supported"},
		{name: "no type", m: mount.Mount{Target: "/t"}, wantErr: "mount type unknown"},
	}
	for _, tt := range tests {
		got, err := parseMount(tt.m)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: err %v, want %q", tt.name, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s:\n got %+v %v\nwant %+v", tt.name, got, err, tt.want)
		}
	}
}

func TestParseMounts(t *testing.T) {
	hc := &container.HostConfig{
		Binds:  []string{"vol:/data", "/tmp:/data/tmp:ro"},
		Tmpfs:  map[string]string{"/run": "size=64k"},
		Mounts: []mount.Mount{{Type: mount.TypeVolume, Target: "/a/b/c"}},
	}
	cfg := &container.Config{Volumes: map[string]struct{}{"/data": {}, "/cache": {}}}
	mps, err := parseMounts(hc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var dsts []string
	for _, mp := range mps {
		dsts = append(dsts, mp.Destination)
	}
	// Parents first; /data comes from the bind, not the image VOLUME.
	if want := []string{"/data", "/run", "/cache", "/data/tmp", "/a/b/c"}; !reflect.DeepEqual(dsts, want) {
		t.Errorf("destinations %q, want %q", dsts, want)
	}
	for _, mp := range mps {
		if mp.Destination == "/data" && (mp.Name != "vol" || mp.Anonymous) {
			t.Errorf("/data: %+v", mp)
		}
		if mp.Destination == "/cache" && !mp.Anonymous {
			t.Errorf("/cache is not anonymous: %+v", mp)
		}
		if mp.Destination == "/run" && !reflect.DeepEqual(mp.TmpfsOptions, []string{"rw", "noexec", "nosuid", "nodev", "size=64k"}) {
			t.Errorf("/run options %q", mp.TmpfsOptions)
		}
	}
	_, err = parseMounts(&container.HostConfig{Binds: []string{"a1:/x"}, Tmpfs: map[string]string{"/x": ""}}, nil)
	if err == nil || !strings.Contains(err.Error(), "Duplicate mount point: /x") {
		t.Errorf("duplicate: %v", err)
	}
}

func TestTmpfsOptions(t *testing.T) {
	for in, want := range map[string]string{
		"":                   "rw,noexec,nosuid,nodev",
		"exec":               "rw,nosuid,nodev,exec",
		"ro,size=1m,size=2m": "noexec,nosuid,nodev,ro,size=2m",
		"suid,dev,mode=700":  "rw,noexec,suid,dev,mode=700",
	} {
		if got := strings.Join(tmpfsOptions(strings.Split(in, ",")), ","); got != want {
			t.Errorf("tmpfsOptions(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestUnixMode(t *testing.T) {
	if got := unixMode(0o1777); got != 0o1777 {
		t.Errorf("CLI octal: %o", got)
	}
	if got := unixMode(os.ModeSticky | 0o755); got != 0o1755 {
		t.Errorf("Go sticky: %o", got)
	}
}
