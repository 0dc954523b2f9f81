package daemon

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"

	"github.com/berthvm/berth/guestagent/engine"
	"github.com/berthvm/berth/images"
)

func TestPsFilterMatch(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	mk := func(id, name string, created time.Time, st state, labels map[string]string) (*ctr, record, *container.HostConfig) {
		rec := record{ID: id, Name: name, Created: created, State: st, Image: "sha256:img",
			Config: &container.Config{Image: "busybox", Labels: labels, ExposedPorts: network.PortSet{network.MustParsePort("80/tcp"): {}}}}
		return &ctr{id: id, rec: rec}, rec, &container.HostConfig{NetworkMode: "bridge"}
	}
	running := state{Running: true, StartedAt: t0}
	exited := state{StartedAt: t0, FinishedAt: t0.Add(time.Minute), ExitCode: 3}
	web, webRec, webHC := mk("aaaa1111", "/web", t0, running, map[string]string{"tier": "front", "env": "prod"})
	webRec.Net = &netRecord{Ports: []publishedPort{{Proto: "tcp", HostPort: 8080, ContainerPort: 80}}}
	webRec.MountPoints = []mountPoint{{Type: mount.TypeVolume, Name: "data", Destination: "/data"}}
	job, jobRec, jobHC := mk("bbbb2222", "/job", t0.Add(time.Hour), exited, nil)

	tests := []struct {
		name             string
		f                map[string][]string
		wantWeb, wantJob bool
	}{
		{"none", nil, true, true},
		{"status running", map[string][]string{"status": {"running"}}, true, false},
		{"status exited or running", map[string][]string{"status": {"exited", "running"}}, true, true},
		{"label key", map[string][]string{"label": {"tier"}}, true, false},
		{"label value", map[string][]string{"label": {"tier=front", "env=prod"}}, true, false},
		{"label wrong value", map[string][]string{"label": {"tier=back"}}, false, false},
		{"name regexp", map[string][]string{"name": {"^/?w"}}, true, false},
		{"name substring", map[string][]string{"name": {"ob"}}, false, true},
		{"id prefix", map[string][]string{"id": {"bbbb"}}, false, true},
		{"exited code", map[string][]string{"exited": {"3"}}, false, true},
		{"exited other code", map[string][]string{"exited": {"0"}}, false, false},
		{"volume by name", map[string][]string{"volume": {"data"}}, true, false},
		{"volume by destination", map[string][]string{"volume": {"/data"}}, true, false},
		{"network", map[string][]string{"network": {"bridge"}}, true, true},
		{"network host", map[string][]string{"network": {"host"}}, false, false},
		{"publish", map[string][]string{"publish": {"80/tcp"}}, true, false},
		{"publish range", map[string][]string{"publish": {"70-90"}}, true, false},
		{"expose", map[string][]string{"expose": {"80"}}, true, true},
		{"expose udp", map[string][]string{"expose": {"80/udp"}}, false, false},
		{"ancestor by name", map[string][]string{"ancestor": {"busybox"}}, true, true},
		{"health none", map[string][]string{"health": {"none"}}, true, true},
		{"health healthy", map[string][]string{"health": {"healthy"}}, false, false},
	}
	d := &Daemon{byID: map[string]*ctr{web.id: web, job.id: job}, names: map[string]string{"/web": web.id, "/job": job.id}}
	d.cfg.Images = emptyImageStore(t)
	for _, tt := range tests {
		pf, err := d.parsePsFilter(context.Background(), tt.f)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if got := pf.match(web, &webRec, webHC, nil); got != tt.wantWeb {
			t.Errorf("%s: web matched %v", tt.name, got)
		}
		if got := pf.match(job, &jobRec, jobHC, nil); got != tt.wantJob {
			t.Errorf("%s: job matched %v", tt.name, got)
		}
	}
	// before/since name other containers.
	web.rec.Created, job.rec.Created = t0, t0.Add(time.Hour)
	pf, err := d.parsePsFilter(context.Background(), map[string][]string{"since": {"web"}})
	if err != nil || pf.match(web, &webRec, webHC, nil) || !pf.match(job, &jobRec, jobHC, nil) {
		t.Errorf("since=web: %v", err)
	}
	pf, err = d.parsePsFilter(context.Background(), map[string][]string{"before": {"job"}})
	if err != nil || !pf.match(web, &webRec, webHC, nil) || pf.match(job, &jobRec, jobHC, nil) {
		t.Errorf("before=job: %v", err)
	}
	// An ancestor given by ID matches the image chain.
	pf = &psFilter{f: map[string][]string{"ancestor": {"sha256:parent"}}, ancestors: map[string]bool{"sha256:parent": true}}
	if !pf.match(web, &webRec, webHC, []string{"sha256:img", "sha256:parent"}) || pf.match(web, &webRec, webHC, []string{"sha256:img"}) {
		t.Error("ancestor by parent image ID")
	}
}

// emptyImageStore is an image store with no images.
func emptyImageStore(t *testing.T) *images.Store {
	t.Helper()
	st, err := images.Open(context.Background(), images.Options{Root: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestPsFilterErrors(t *testing.T) {
	d := &Daemon{byID: map[string]*ctr{}, names: map[string]string{}}
	for _, f := range []map[string][]string{
		{"colour": {"red"}},
		{"status": {"sleeping"}},
		{"exited": {"x"}},
		{"publish": {"http"}},
		{"is-task": {"maybe"}},
		{"health": {"great"}},
	} {
		if _, err := d.parsePsFilter(context.Background(), f); !errors.Is(err, engine.ErrInvalid) {
			t.Errorf("%v: %v, want ErrInvalid", f, err)
		}
	}
	if _, err := d.parsePsFilter(context.Background(), map[string][]string{"before": {"nope"}}); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("before an unknown container: %v", err)
	}
	_, err := d.parsePsFilter(context.Background(), map[string][]string{"colour": {"red"}})
	if err == nil || err.Error() != "invalid filter 'colour'" {
		t.Errorf("text: %v", err)
	}
}

func TestMatchLabelFilter(t *testing.T) {
	l := map[string]string{"a": "1", "b": ""}
	for _, tt := range []struct {
		f    []string
		want bool
		ok   bool
	}{
		{[]string{"a"}, true, true}, {[]string{"a=1"}, true, true}, {[]string{"a=2"}, true, false},
		{[]string{"a", "b"}, true, true}, {[]string{"c"}, true, false},
		{[]string{"c"}, false, true}, {[]string{"a"}, false, false}, {[]string{"a=2"}, false, true},
	} {
		if got := matchLabelFilter(l, tt.f, tt.want); got != tt.ok {
			t.Errorf("%v want=%v: %v", tt.f, tt.want, got)
		}
	}
}

func TestParseTimestamp(t *testing.T) {
	now := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"10m":                       now.Add(-10 * time.Minute),
		"1700000000":                time.Unix(1700000000, 0),
		"1700000000.5":              time.Unix(1700000000, 5e8),
		"2026-01-02T03:04:05Z":      time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		"2026-01-02T03:04:05+02:00": time.Date(2026, 1, 2, 1, 4, 5, 0, time.UTC),
	} {
		got, err := parseTimestamp(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseTimestamp(%q) = %v %v, want %v", in, got, err, want)
		}
	}
	if _, err := parseTimestamp("yesterday", now); err == nil {
		t.Error("parsed nonsense")
	}
	if got, err := parseTimestamp("2026-01-02", now); err != nil || got.Year() != 2026 || got.Day() != 2 {
		t.Errorf("date: %v %v", got, err)
	}
}

func TestStateText(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		st     state
		status container.ContainerState
		text   string
	}{
		{state{}, container.StateCreated, "Created"},
		{state{Running: true, StartedAt: now.Add(-3 * time.Second)}, container.StateRunning, "Up 3 seconds"},
		{state{Running: true, Paused: true, StartedAt: now.Add(-2 * time.Hour)}, container.StatePaused, "Up 2 hours (Paused)"},
		{state{Running: true, Restarting: true, ExitCode: 1, StartedAt: now.Add(-time.Hour), FinishedAt: now.Add(-time.Second)}, container.StateRestarting, "Restarting (1) 1 second ago"},
		{state{StartedAt: now.Add(-time.Hour), FinishedAt: now.Add(-5 * time.Second)}, container.StateExited, "Exited (0) 5 seconds ago"},
		{state{StartedAt: now.Add(-time.Hour), FinishedAt: now.Add(-time.Minute), ExitCode: 137}, container.StateExited, "Exited (137) About a minute ago"},
		{state{Removing: true, StartedAt: now}, container.StateRemoving, "Removal In Progress"},
		{state{Dead: true, StartedAt: now}, container.StateDead, "Dead"},
	}
	for _, tt := range tests {
		if s := tt.st.status(); s != tt.status {
			t.Errorf("%+v: status %q, want %q", tt.st, s, tt.status)
		}
		if s := tt.st.text(now); s != tt.text {
			t.Errorf("%+v: text %q, want %q", tt.st, s, tt.text)
		}
	}
	if !strings.HasPrefix(timeString(time.Time{}), "0001-01-01T00:00:00Z") {
		t.Errorf("zero time %q", timeString(time.Time{}))
	}
}
