package dockerapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/common"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/system"

	"github.com/berthvm/berth/guestagent/engine"
	"github.com/berthvm/berth/images"
	"github.com/berthvm/berth/images/imagetest"
)

func TestStatusOf(t *testing.T) {
	tests := []struct {
		err  error
		want int
	}{
		{engine.WithKind(engine.ErrInvalid, "bad"), 400},
		{fmt.Errorf("wrapped: %w", engine.WithKind(engine.ErrNotFound, "gone")), 404},
		{images.ErrConflict, 409},
		{fmt.Errorf("pulling: %w", images.ErrUnauthorized), 401},
		{engine.ErrForbidden, 403},
		{notImplementedf("no"), 501},
		{engine.ErrNotModified, 304},
		{engine.ErrUnavailable, 503},
		{errors.New("boom"), 500},
		{context.Canceled, 500},
		{errors.Join(errors.New("x"), images.ErrNotFound), 404},
	}
	for _, tt := range tests {
		if got := statusOf(tt.err); got != tt.want {
			t.Errorf("statusOf(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}

func TestWriteErrorBody(t *testing.T) {
	s := New(Config{Log: testLogger()})
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/x", nil)
	s.writeError(rec, req, fmt.Errorf("finding: %w", notFoundf("No such image: a:b")))
	var body common.ErrorResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if rec.Code != 404 || body.Message != "finding: No such image: a:b" || rec.Header().Get("Content-Type") != "application/json" {
		t.Errorf("got %d %q %q", rec.Code, rec.Header().Get("Content-Type"), rec.Body.String())
	}
}

func TestSplitVersion(t *testing.T) {
	tests := []struct {
		in, path, version string
		wantErr           bool
	}{
		{"/v1.47/images/json", "/images/json", "1.47", false},
		{"/v1.24/_ping", "/_ping", "1.24", false},
		{"/images/json", "/images/json", APIVersion, false},
		{"/v1.56/images/localhost:5000/a/b:c/json", "/images/localhost:5000/a/b:c/json", "1.56", false},
		{"/v1.12/info", "", "1.12", true},
		{"/v9.0/info", "", "9.0", true},
		{"/v1.x/info", "/v1.x/info", APIVersion, false},
		{"/volumes", "/volumes", APIVersion, false},
		{"/v1.47", "/", "1.47", false},
	}
	for _, tt := range tests {
		v, p, err := splitVersion(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("splitVersion(%q) error %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if err == nil && (p != tt.path || v.String() != tt.version) {
			t.Errorf("splitVersion(%q) = %s %q, want %s %q", tt.in, v, p, tt.version, tt.path)
		}
		if err != nil && statusOf(err) != 400 {
			t.Errorf("splitVersion(%q): status %d, want 400", tt.in, statusOf(err))
		}
	}
}

func TestSplitImagePathAndPullRef(t *testing.T) {
	for _, tt := range []struct{ in, name, action string }{
		{"busybox/json", "busybox", "json"},
		{"localhost:5000/a/b:tag/json", "localhost:5000/a/b:tag", "json"},
		{"r/x@sha256:abc/history", "r/x@sha256:abc", "history"},
		{"json", "json", ""},
	} {
		if n, a := splitImagePath(tt.in); n != tt.name || a != tt.action {
			t.Errorf("splitImagePath(%q) = %q %q", tt.in, n, a)
		}
	}
	for _, tt := range []struct {
		from, tag, want string
		ok              bool
	}{
		{"busybox", "latest", "busybox:latest", true},
		{"localhost:5000/a", "v1", "localhost:5000/a:v1", true},
		{"a", "sha256:" + strings.Repeat("a", 64), "a@sha256:" + strings.Repeat("a", 64), true},
		{"a", "", "a", true},
		{"", "x", "", false},
		{"a", "b/c", "", false},
	} {
		got, err := pullRef(tt.from, tt.tag)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("pullRef(%q, %q) = %q, %v", tt.from, tt.tag, got, err)
		}
	}
}

func TestParseEventTime(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"", time.Time{}, true},
		{"1700000000", time.Unix(1700000000, 0), true},
		{"1700000000.5", time.Unix(1700000000, 500000000), true},
		{"1700000000.000000001", time.Unix(1700000000, 1), true},
		{"1700000000.", time.Time{}, false},
		{"-5", time.Time{}, false},
		{"+5", time.Time{}, false},
		{"10m", time.Time{}, false},
		{"1.1234567890", time.Time{}, false},
	} {
		got, err := parseEventTime(tt.in)
		if (err == nil) != tt.ok || !got.Equal(tt.want) {
			t.Errorf("parseEventTime(%q) = %v, %v", tt.in, got, err)
		}
	}
}

func TestParsePlatform(t *testing.T) {
	for _, tt := range []struct {
		in, want string
		ok       bool
	}{
		{"", "", true},
		{"linux/amd64", "linux/amd64/", true},
		{"Linux/ARM64/v8", "linux/arm64/v8", true},
		{`{"os":"linux","architecture":"arm64"}`, "linux/arm64/", true},
		{"linux//", "", false},
		{"a/b/c/d", "", false},
		{"linux/am d64", "", false},
		{`{"architecture":"arm64"}`, "", false},
	} {
		p, err := parsePlatform(tt.in)
		got := ""
		if p != nil {
			got = p.OS + "/" + p.Architecture + "/" + p.Variant
		}
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parsePlatform(%q) = %q, %v", tt.in, got, err)
		}
		if err != nil && statusOf(err) != 400 {
			t.Errorf("parsePlatform(%q): status %d", tt.in, statusOf(err))
		}
	}
}

// TestRawHTTP checks status codes and bodies of the error cases, and the
// headers and shapes the CLI relies on, with a plain HTTP client.
func TestRawHTTP(t *testing.T) {
	e := startEnv(t, nil)
	reg := imagetest.StartRegistry(t, imagetest.RegistryOptions{})
	ref := reg.Ref("raw/busybox:1")
	reg.Push(t, ref, imagetest.Busybox(t, runtime.GOARCH))
	ctx := context.Background()
	if _, err := e.store.Pull(ctx, ref, images.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.store.Tag(ctx, ref, "other/name:2"); err != nil {
		t.Fatal(err)
	}
	img, err := e.store.Resolve(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name, method, path, body string
		hdr                      map[string]string
		code                     int
		msg                      string // substring of the JSON message
	}{
		{"unknown endpoint", "GET", "/v1.47/nothing/here", "", nil, 404, "page not found"},
		{"unknown method", "PUT", "/info", "", nil, 404, "page not found"},
		{"too old version", "GET", "/v1.12/info", "", nil, 400, "too old"},
		{"too new version", "GET", "/v9.1/info", "", nil, 400, "too new"},
		{"inspect missing", "GET", "/v1.50/images/nosuch:1/json", "", nil, 404, "No such image"},
		{"history missing", "GET", "/images/nosuch/history", "", nil, 404, "No such image"},
		{"rmi missing", "DELETE", "/images/nosuch:1", "", nil, 404, "No such image"},
		{"rmi by ID in two repositories", "DELETE", "/images/" + img.ID, "", nil, 409, "must be forced"},
		{"tag without repo", "POST", "/images/" + ref + "/tag", "", nil, 400, "repo"},
		{"tag with bad tag", "POST", "/images/" + ref + "/tag?repo=x&tag=a/b", "", nil, 400, "invalid tag"},
		{"tag missing source", "POST", "/images/nosuch/tag?repo=x", "", nil, 404, "No such image"},
		{"bad filters", "GET", "/images/json?filters=%7Bnope", "", nil, 400, "invalid filters"},
		{"unknown filter", "GET", "/images/json?filters=" + `{"colour":{"red":true}}`, "", nil, 400, "invalid filter 'colour'"},
		{"pull without image", "POST", "/images/create", "", nil, 400, "fromImage"},
		{"pull bad platform", "POST", "/images/create?fromImage=a&platform=a/b/c/d", "", nil, 400, "platform"},
		{"pull bad auth header", "POST", "/images/create?fromImage=" + ref, "", map[string]string{"X-Registry-Auth": "!!!"}, 400, "X-Registry-Auth"},
		{"pull invalid reference", "POST", "/images/create?fromImage=UPPER&tag=x", "", nil, 400, ""},
		{"save missing", "GET", "/images/nosuch/get", "", nil, 404, "No such image"},
		{"save nothing", "GET", "/images/get", "", nil, 400, "names"},
		{"auth malformed", "POST", "/auth", `{"username":`, nil, 400, "invalid JSON"},
		{"auth wrong type", "POST", "/auth", `{"username":5}`, nil, 400, "username"},
		{"auth trailing", "POST", "/auth", `{} {}`, nil, 400, "after the object"},
		{"auth empty", "POST", "/auth", ``, nil, 400, "empty"},
		{"events bad since", "GET", "/events?since=yesterday", "", nil, 400, "timestamp"},
		{"events bad filter", "GET", "/events?filters=" + `{"type":["bogus"]}`, "", nil, 400, "type=bogus"},
		{"containers without engine", "GET", "/v1.50/containers/json", "", nil, 501, "container engine is not running"},
		{"container create without engine", "POST", "/containers/create", "{}", nil, 501, "container engine"},
		{"volumes without a store", "GET", "/volumes", "", nil, 501, "volume store is not running"},
		{"exec without engine", "GET", "/exec/x/json", "", nil, 501, "container engine"},
		{"commit without engine", "POST", "/commit?container=x", "", nil, 501, "container engine"},
		{"swarm", "GET", "/swarm", "", nil, 501, "not supported"},
		{"networks need no engine", "GET", "/networks/nope", "", nil, 404, "not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := e.do(t, tt.method, tt.path, strings.NewReader(tt.body), tt.hdr)
			if resp.StatusCode != tt.code {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.code, body)
			}
			var er common.ErrorResponse
			if err := json.Unmarshal([]byte(body), &er); err != nil || er.Message == "" {
				t.Fatalf("body is not a JSON error: %q (%v)", body, err)
			}
			if !strings.Contains(er.Message, tt.msg) {
				t.Errorf("message %q lacks %q", er.Message, tt.msg)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}

	t.Run("ping", func(t *testing.T) {
		for _, m := range []string{"GET", "HEAD"} {
			resp, body := e.do(t, m, "/_ping", nil, nil)
			want := map[string]string{"API-Version": APIVersion, "Builder-Version": "1", "Docker-Experimental": "false", "OSType": "linux", "Cache-Control": "no-cache, no-store, must-revalidate"}
			for k, v := range want {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s /_ping: %s = %q, want %q", m, k, got, v)
				}
			}
			if resp.StatusCode != 200 || (m == "GET" && body != "OK") || (m == "HEAD" && body != "") {
				t.Errorf("%s /_ping: %d %q", m, resp.StatusCode, body)
			}
		}
	})
	t.Run("pull error mid-stream", func(t *testing.T) {
		resp, body := e.do(t, "POST", "/images/create?fromImage="+reg.Ref("raw/nothing")+"&tag=x", nil, nil)
		lines := strings.Split(strings.TrimSpace(body), "\n")
		var last streamError
		if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil {
			t.Fatalf("last line %q: %v", lines[len(lines)-1], err)
		}
		if resp.StatusCode != 200 || len(lines) < 2 || last.Message == "" || last.Detail.Message != last.Message || !strings.Contains(last.Message, "not found") {
			t.Errorf("pull of a missing tag: %d %s", resp.StatusCode, body)
		}
	})
	t.Run("load garbage", func(t *testing.T) {
		resp, body := e.do(t, "POST", "/images/load?quiet=1", strings.NewReader("this is not a tar archive at all"), nil)
		if resp.StatusCode == 200 && !strings.Contains(body, "errorDetail") || resp.StatusCode >= 500 {
			t.Errorf("load of garbage: %d %s", resp.StatusCode, body)
		}
		t.Logf("load of garbage: %d %s", resp.StatusCode, body)
	})
	t.Run("rmi conflict then force", func(t *testing.T) {
		resp, body := e.do(t, "DELETE", "/images/"+img.ID+"?force=1", nil, nil)
		if resp.StatusCode != 200 || !strings.Contains(body, `"Deleted":"`+img.ID+`"`) {
			t.Errorf("forced rmi: %d %s", resp.StatusCode, body)
		}
	})
	t.Run("info shape", func(t *testing.T) {
		resp, body := e.do(t, "GET", "/v1.50/info", nil, nil)
		var info system.Info
		if err := json.Unmarshal([]byte(body), &info); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%d %v %s", resp.StatusCode, err, body)
		}
		if info.NCPU != runtime.NumCPU() || info.MemTotal <= 0 || info.OperatingSystem != "berth" || info.Driver != "overlay2" || info.KernelVersion == "" {
			t.Errorf("info = %+v", info)
		}
	})
	t.Run("system df versions", func(t *testing.T) {
		_, old := e.do(t, "GET", "/v1.50/system/df", nil, nil)
		_, mid := e.do(t, "GET", "/v1.52/system/df", nil, nil)
		_, cur := e.do(t, "GET", "/v1.53/system/df", nil, nil)
		if !strings.Contains(old, `"LayersSize"`) || strings.Contains(old, `"ImageUsage"`) {
			t.Errorf("1.50 df: %s", old)
		}
		if !strings.Contains(mid, `"LayersSize"`) || !strings.Contains(mid, `"ImageUsage"`) {
			t.Errorf("1.52 df: %s", mid)
		}
		if strings.Contains(cur, `"LayersSize"`) || !strings.Contains(cur, `"ImageUsage"`) {
			t.Errorf("1.53 df: %s", cur)
		}
	})
}

// TestEventsLive checks that a live stream gets events as they happen,
// filtered, and ends at `until`.
func TestEventsLive(t *testing.T) {
	e := startEnv(t, nil)
	until := time.Now().Add(2 * time.Second)
	req, err := http.NewRequest("GET", fmt.Sprintf("http://docker/v1.50/events?until=%d.%09d&filters=%s", until.Unix(), until.Nanosecond(), `{"event":{"tag":true}}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := e.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	e.events.Publish(events.Message{Type: events.ImageEventType, Action: events.ActionPull, Actor: events.Actor{ID: "a"}})
	e.events.Publish(events.Message{Type: events.ImageEventType, Action: events.ActionTag, Actor: events.Actor{ID: "b"}})
	dec := json.NewDecoder(resp.Body)
	var m wireEvent
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	if m.Action != events.ActionTag || m.Actor.ID != "b" || m.Status != "tag" || m.TimeNano == 0 {
		t.Errorf("event = %+v", m)
	}
	// The stream ends by itself at until.
	done := make(chan error, 1)
	go func() { _, err := io.Copy(io.Discard, resp.Body); done <- err }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("stream end: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("events stream did not end at until")
	}
}
