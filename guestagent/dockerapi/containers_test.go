package dockerapi

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/common"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/system"

	"github.com/berthvm/berth/images"
	"github.com/berthvm/berth/images/imagetest"
)

// TestContainersBackend checks what the API asks of engine.Containers
// beside the container routes: images in use are kept, and counts and
// lists reach info, df and ps.
func TestContainersBackend(t *testing.T) {
	e, _, _ := startFake(t)
	reg := imagetest.StartRegistry(t, imagetest.RegistryOptions{})
	ref := reg.Ref("used/busybox:1")
	reg.Push(t, ref, imagetest.Busybox(t, runtime.GOARCH))
	img, err := e.store.Pull(context.Background(), ref, images.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var created container.CreateResponse
	e.mustJSON(t, "POST", "/containers/create?name=web", fmt.Sprintf(`{"Image":%q,"Cmd":["sleep"]}`, img.ID), 201, &created)
	e.mustJSON(t, "POST", "/containers/web/start", "", 204, nil)

	resp, body := e.do(t, "DELETE", "/images/"+img.ID, nil, nil)
	if resp.StatusCode != 409 {
		t.Errorf("rmi of an image in use: %d %s", resp.StatusCode, body)
	}
	// Forced by ID, still refused while a running container uses it,
	// naming it; by reference, -f only untags.
	for _, name := range []string{img.ID, strings.TrimPrefix(img.ID, "sha256:")[:12]} {
		resp, body = e.do(t, "DELETE", "/images/"+name+"?force=1", nil, nil)
		if resp.StatusCode != 409 || !strings.Contains(body, "cannot be forced") || !strings.Contains(body, created.ID[:12]) {
			t.Errorf("rmi -f %s of an image a running container uses: %d %s", name, resp.StatusCode, body)
		}
	}
	resp, body = e.do(t, "DELETE", "/images/"+ref+"?force=1", nil, nil)
	if resp.StatusCode != 200 || !strings.Contains(body, "Untagged") || strings.Contains(body, "Deleted") {
		t.Errorf("rmi -f of the reference of an image a running container uses: %d %s", resp.StatusCode, body)
	}
	if _, body := e.do(t, "POST", "/images/prune?filters="+`{"dangling":{"false":true}}`, nil, nil); strings.Contains(body, img.ID) {
		t.Errorf("prune deleted an image in use: %s", body)
	}
	var list []container.Summary
	e.mustJSON(t, "GET", "/v1.50/containers/json?all=1", "", 200, &list)
	if len(list) != 1 || list[0].ID != created.ID {
		t.Errorf("containers/json: %+v", list)
	}
	var info system.Info
	e.mustJSON(t, "GET", "/info", "", 200, &info)
	if info.Containers != 1 || info.ContainersRunning != 1 || info.Images != 1 {
		t.Errorf("info: %+v", info)
	}
	var df system.DiskUsage
	e.mustJSON(t, "GET", "/v1.53/system/df", "", 200, &df)
	if df.ImageUsage == nil || df.ImageUsage.ActiveCount != 1 || df.ImageUsage.Reclaimable != 0 || df.ContainerUsage == nil || df.ContainerUsage.TotalCount != 1 || df.ContainerUsage.ActiveCount != 1 {
		t.Errorf("system df: %+v", df)
	}
	out := e.mustDocker(t, "ps", "-a", "--format", "{{.ID}} {{.Names}}")
	if strings.TrimSpace(out) != created.ID[:12]+" web" {
		t.Errorf("docker ps: %q", out)
	}
}

// step is one request of a route test and what it must answer.
type step struct {
	name, method, path, body string
	code                     int
	msg                      string // substring of the error message or body
}

func (e *testEnv) run(t *testing.T, steps []step) {
	t.Helper()
	for _, s := range steps {
		resp, body := e.do(t, s.method, s.path, strings.NewReader(s.body), map[string]string{"Content-Type": "application/json"})
		if resp.StatusCode != s.code {
			t.Errorf("%s: %s %s: status %d, want %d: %s", s.name, s.method, s.path, resp.StatusCode, s.code, body)
			continue
		}
		if s.code >= 400 {
			var er common.ErrorResponse
			if err := json.Unmarshal([]byte(body), &er); err != nil || er.Message == "" {
				t.Errorf("%s: not a JSON error: %q", s.name, body)
				continue
			}
			body = er.Message
		}
		if !strings.Contains(body, s.msg) {
			t.Errorf("%s: %q lacks %q", s.name, body, s.msg)
		}
	}
}

func TestContainerRoutes(t *testing.T) {
	e, f, _ := startFake(t)
	e.run(t, []step{
		{"create malformed", "POST", "/containers/create", `{"Image":`, 400, "invalid JSON"},
		{"create wrong type", "POST", "/containers/create", `{"Image":5}`, 400, "Image"},
		{"create without config", "POST", "/containers/create", `{}`, 400, "config cannot be empty"},
		{"create empty body", "POST", "/containers/create", ``, 400, "empty"},
		{"create bad name", "POST", "/containers/create?name=-x", `{"Image":"i"}`, 400, "Invalid container name (-x)"},
		{"create one-letter name", "POST", "/containers/create?name=a", `{"Image":"i"}`, 400, "Invalid container name"},
		{"create bad platform", "POST", "/containers/create?platform=a/b/c/d", `{"Image":"i"}`, 400, "platform"},
		{"create missing image", "POST", "/containers/create", `{"Image":"missing:1"}`, 404, "No such image: missing:1"},
		{"create", "POST", "/containers/create?name=/web&platform=linux/arm64", `{"Image":"busybox","Cmd":["sleep"],"Labels":{"k":"v"}}`, 201, `"Warnings":[]`},
		{"create taken name", "POST", "/containers/create?name=web", `{"Image":"busybox"}`, 409, "already in use"},
		{"inspect missing", "GET", "/containers/nope/json", "", 404, "No such container: nope"},
		{"inspect", "GET", "/containers/web/json", "", 200, `"Name":"/web"`},
		{"start missing", "POST", "/containers/nope/start", "", 404, "No such container: nope"},
		{"start", "POST", "/containers/web/start", "", 204, ""},
		{"pause", "POST", "/containers/web/pause", "", 204, ""},
		{"pause again", "POST", "/containers/web/pause", "", 409, "paused"},
		{"unpause", "POST", "/containers/web/unpause", "", 204, ""},
		{"stop bad timeout", "POST", "/containers/web/stop?t=soon", "", 400, "invalid value for t"},
		{"kill bad signal", "POST", "/containers/web/kill?signal=NOPE", "", 400, "invalid signal"},
		{"rename empty", "POST", "/containers/web/rename", "", 400, "empty"},
		{"rename invalid", "POST", "/containers/web/rename?name=a%20b", "", 400, "Invalid container name"},
		{"rename", "POST", "/containers/web/rename?name=front", "", 204, ""},
		{"inspect renamed", "GET", "/containers/front/json", "", 200, `"Name":"/front"`},
		{"resize without h", "POST", "/containers/front/resize?w=80", "", 400, "invalid value for h"},
		{"resize", "POST", "/containers/front/resize?h=24&w=80", "", 200, ""},
		{"top", "GET", "/containers/front/top?ps_args=aux", "", 200, `"Titles":["UID","PID","CMD"]`},
		{"wait bad condition", "POST", "/containers/front/wait?condition=soon", "", 400, "invalid condition"},
		{"wait missing", "POST", "/containers/nope/wait", "", 404, "No such container"},
		{"remove running", "DELETE", "/containers/front", "", 409, "container is running"},
		{"remove link", "DELETE", "/containers/front?link=1", "", 501, "not supported"},
		{"stop", "POST", "/containers/front/stop?t=5&signal=USR1", "", 204, ""},
		{"stop stopped", "POST", "/containers/front/stop", "", 304, ""},
		{"start again", "POST", "/containers/front/start", "", 204, ""},
		{"start running", "POST", "/containers/front/start", "", 304, ""},
		{"kill", "POST", "/containers/front/kill?signal=SIGHUP", "", 204, ""},
		{"commit without container", "POST", "/commit", "", 400, "container parameter"},
		{"commit tag without repo", "POST", "/commit?container=front&tag=v1", "", 400, "without a repository"},
		{"commit missing", "POST", "/commit?container=nope", "", 404, "No such container: nope"},
		{"commit bad body", "POST", "/commit?container=front", `[1]`, 400, "invalid JSON"},
		{"commit", "POST", "/commit?container=front&repo=me/img&tag=v1&author=A&comment=C&changes=ENV+A%3D1&changes=CMD+x&pause=0", `{"Env":["X=1"]}`, 201, `"Id":"sha256:`},
		{"commit default pause", "POST", "/commit?container=front", ``, 201, `"Id":"sha256:`},
		{"prune bad filter", "POST", "/containers/prune?filters=" + `{"colour":["red"]}`, "", 400, "invalid filter 'colour'"},
		{"update", "POST", "/containers/front/update", `{}`, 501, "not supported"},
		{"unknown subroute", "GET", "/containers/front/nothing", "", 404, "page not found"},
		{"attach ws", "GET", "/containers/front/attach/ws", "", 501, "not supported"},
	})
	fe := f.calls()
	if len(fe.creates) < 2 || fe.creates[len(fe.creates)-2].Name != "web" || fe.creates[len(fe.creates)-2].Platform != "linux/arm64" || fe.creates[len(fe.creates)-2].HostConfig == nil {
		t.Errorf("create options: %+v", fe.creates)
	}
	if len(fe.stops) != 2 || fe.stops[0].Timeout == nil || *fe.stops[0].Timeout != 5 || fe.stops[0].Signal != "USR1" {
		t.Errorf("stop options: %+v", fe.stops)
	}
	if len(fe.resizes) != 1 || fe.resizes[0] != "front 24x80" || len(fe.topArgs) != 1 || fe.topArgs[0] != "aux" {
		t.Errorf("resize %v, top %v", fe.resizes, fe.topArgs)
	}
	if len(fe.commits) != 2 {
		t.Fatalf("commits: %+v", fe.commits)
	}
	c := fe.commits[0]
	if c.Reference != "me/img:v1" || c.Author != "A" || c.Comment != "C" || c.Pause || len(c.Changes) != 2 || c.Changes[0] != "ENV A=1" || c.Config == nil || c.Config.Env[0] != "X=1" {
		t.Errorf("commit options: %+v", c)
	}
	if c := fe.commits[1]; !c.Pause || c.Config != nil || c.Reference != "" {
		t.Errorf("commit defaults: %+v", c)
	}

	// The kill above ends the container: exit 128+1.
	var w waitBody
	e.mustJSON(t, "POST", "/containers/front/wait", "", 200, &w)
	if w.StatusCode != 129 {
		t.Errorf("exit after SIGHUP: %d", w.StatusCode)
	}
	var rep container.PruneReport
	e.mustJSON(t, "POST", "/containers/prune?filters="+`{"label":["k=v"]}`, "", 200, &rep)
	if len(rep.ContainersDeleted) != 1 {
		t.Errorf("prune: %+v", rep)
	}
	e.run(t, []step{{"inspect pruned", "GET", "/containers/front/json", "", 404, "No such container: front"}})
}

func TestContainerInspectVersions(t *testing.T) {
	e, _, _ := startFake(t)
	e.mustJSON(t, "POST", "/containers/create?name=web", `{"Image":"busybox","Cmd":["sleep"],"MacAddress":"02:42:ac:11:00:09"}`, 201, nil)
	e.mustJSON(t, "POST", "/containers/web/start", "", 204, nil)
	var old map[string]any
	e.mustJSON(t, "GET", "/v1.50/containers/web/json", "", 200, &old)
	ns, _ := old["NetworkSettings"].(map[string]any)
	if ns["IPAddress"] != "172.17.0.2" || ns["Gateway"] != "172.17.0.1" || ns["IPPrefixLen"] != float64(16) || ns["Networks"] == nil {
		t.Errorf("1.50 NetworkSettings: %v", ns)
	}
	var cur map[string]any
	e.mustJSON(t, "GET", "/v1.52/containers/web/json?size=1", "", 200, &cur)
	ns, _ = cur["NetworkSettings"].(map[string]any)
	if _, ok := ns["IPAddress"]; ok || ns["Networks"] == nil || cur["SizeRw"] == nil {
		t.Errorf("1.52 inspect: %v", cur)
	}
}

func TestCreateLegacyMacAddress(t *testing.T) {
	for _, tt := range []struct {
		version, body, mode, want string
	}{
		{"1.50", `{"Image":"i","MacAddress":"02:42:ac:11:00:09"}`, "bridge", "02:42:ac:11:00:09"},
		{"1.50", `{"Image":"i","MacAddress":"02:42:ac:11:00:09","HostConfig":{"NetworkMode":"host"}}`, "host", "02:42:ac:11:00:09"},
		{"1.50", `{"Image":"i","MacAddress":"02:42:ac:11:00:09","NetworkingConfig":{"EndpointsConfig":{"bridge":{"MacAddress":"02:00:00:00:00:01"}}}}`, "bridge", "02:00:00:00:00:01"},
		{"1.52", `{"Image":"i","MacAddress":"02:42:ac:11:00:09"}`, "bridge", ""},
	} {
		r, _ := http.NewRequest("POST", "/containers/create", nil)
		v, _ := parseVersion(tt.version)
		r = r.WithContext(withVersion(r.Context(), v))
		req, err := decodeCreate(r, []byte(tt.body))
		if err != nil {
			t.Fatalf("%s %s: %v", tt.version, tt.body, err)
		}
		got := ""
		if req.NetworkingConfig != nil && req.NetworkingConfig.EndpointsConfig[tt.mode] != nil {
			got = req.NetworkingConfig.EndpointsConfig[tt.mode].MacAddress.String()
		}
		if got != tt.want {
			t.Errorf("%s %s: MAC %q, want %q", tt.version, tt.body, got, tt.want)
		}
	}
	r, _ := http.NewRequest("POST", "/containers/create", nil)
	if _, err := decodeCreate(r.WithContext(withVersion(r.Context(), apiVersion{1, 50})), []byte(`{"Image":"i","MacAddress":"zz"}`)); statusOf(err) != 400 {
		t.Errorf("bad MAC: %v", err)
	}
}

// TestWaitHeaderBeforeBody checks that the 200 goes out at once (docker
// run relies on it before it starts) and the body on exit.
func TestWaitHeaderBeforeBody(t *testing.T) {
	e, _, _ := startFake(t)
	e.mustJSON(t, "POST", "/containers/create?name=ww", `{"Image":"busybox","Cmd":["sleep"]}`, 201, nil)
	e.mustJSON(t, "POST", "/containers/ww/start", "", 204, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", "http://docker/v1.50/containers/ww/wait?condition=not-running", nil)
	resp, err := e.client().Do(req) // returns with the header, before the exit
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("wait: %d %v", resp.StatusCode, resp.Header)
	}
	var insp container.InspectResponse
	e.mustJSON(t, "GET", "/containers/ww/json", "", 200, &insp)
	if !insp.State.Running {
		t.Fatal("the container is not running while wait is pending")
	}
	e.mustJSON(t, "POST", "/containers/ww/kill?signal=TERM", "", 204, nil)
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(body)); got != `{"StatusCode":143,"Error":null}` {
		t.Errorf("wait body %q", got)
	}

	// next-exit and removed are registered before the start.
	e.mustJSON(t, "POST", "/containers/create?name=rmx", `{"Image":"busybox","Cmd":["fail","3"],"HostConfig":{"AutoRemove":true}}`, 201, nil)
	var waits []*http.Response
	for _, cond := range []string{"next-exit", "removed"} {
		req, _ := http.NewRequestWithContext(ctx, "POST", "http://docker/containers/rmx/wait?condition="+cond, nil)
		resp, err := e.client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		waits = append(waits, resp)
	}
	e.mustJSON(t, "POST", "/containers/rmx/start", "", 204, nil)
	for _, resp := range waits {
		var w waitBody
		if err := json.NewDecoder(resp.Body).Decode(&w); err != nil || w.StatusCode != 3 {
			t.Errorf("wait %s: %+v %v", resp.Request.URL, w, err)
		}
	}
	e.run(t, []step{{"auto-removed", "GET", "/containers/rmx/json", "", 404, "No such container"}})
}

func TestLogs(t *testing.T) {
	e, _, _ := startFake(t)
	e.mustJSON(t, "POST", "/containers/create?name=ll", `{"Image":"busybox","Cmd":["lines","5"]}`, 201, nil)
	e.mustJSON(t, "POST", "/containers/create?name=ff", `{"Image":"busybox","Cmd":["fail","3"]}`, 201, nil)
	e.mustJSON(t, "POST", "/containers/create?name=tt", `{"Image":"busybox","Cmd":["lines","2"],"Tty":true}`, 201, nil)
	for _, n := range []string{"ll", "ff", "tt"} {
		e.mustJSON(t, "POST", "/containers/"+n+"/start", "", 204, nil)
		e.mustJSON(t, "POST", "/containers/"+n+"/wait", "", 200, nil)
	}
	get := func(path string) (*http.Response, []byte) {
		resp, body := e.do(t, "GET", path, nil, nil)
		return resp, []byte(body)
	}
	resp, body := get("/v1.50/containers/ll/logs?stdout=1&stderr=1")
	if ct := resp.Header.Get("Content-Type"); ct != "application/vnd.docker.multiplexed-stream" {
		t.Errorf("Content-Type %q", ct)
	}
	if out, errs := demux(t, body); out != "line 1\nline 2\nline 3\nline 4\nline 5\n" || errs != "" {
		t.Errorf("logs: %q %q", out, errs)
	}
	if out, _ := demux(t, mustBody(get("/containers/ll/logs?stdout=1&tail=2"))); out != "line 4\nline 5\n" {
		t.Errorf("tail 2: %q", out)
	}
	if out, _ := demux(t, mustBody(get("/containers/ll/logs?stdout=1&tail=all"))); strings.Count(out, "\n") != 5 {
		t.Errorf("tail all: %q", out)
	}
	out, _ := demux(t, mustBody(get("/containers/ll/logs?stdout=1&tail=1&timestamps=1")))
	ts, line, _ := strings.Cut(out, " ")
	if _, err := time.Parse(time.RFC3339Nano, ts); err != nil || len(ts) != len(timestampFormat)-5 || line != "line 5\n" {
		t.Errorf("timestamps: %q (%v)", out, err)
	}
	if out, errs := demux(t, mustBody(get("/containers/ff/logs?stderr=1"))); out != "" || errs != "failing with 3\n" {
		t.Errorf("stderr logs: %q %q", out, errs)
	}
	if out, _ := demux(t, mustBody(get("/containers/ff/logs?stdout=1"))); out != "" {
		t.Errorf("stdout-only logs of stderr output: %q", out)
	}
	resp, body = get("/v1.50/containers/tt/logs?stdout=1&stderr=1")
	if ct := resp.Header.Get("Content-Type"); ct != "application/vnd.docker.raw-stream" || string(body) != "line 1\nline 2\n" {
		t.Errorf("tty logs: %q %q", ct, body)
	}
	resp, body = get("/v1.41/containers/ll/logs?stdout=1&tail=1")
	if ct := resp.Header.Get("Content-Type"); ct != "application/vnd.docker.raw-stream" {
		t.Errorf("1.41 Content-Type %q", ct)
	}
	if out, _ := demux(t, body); out != "line 5\n" { // still framed
		t.Errorf("1.41 logs: %q", out)
	}
	if out, _ := demux(t, mustBody(get(fmt.Sprintf("/containers/ll/logs?stdout=1&since=%d", time.Now().Add(time.Hour).Unix())))); out != "" {
		t.Errorf("since the future: %q", out)
	}
	e.run(t, []step{
		{"no stream", "GET", "/containers/ll/logs", "", 400, "choose at least one stream"},
		{"bad since", "GET", "/containers/ll/logs?stdout=1&since=yesterday", "", 400, "timestamp"},
		{"missing", "GET", "/containers/nope/logs?stdout=1", "", 404, "No such container: nope"},
	})

	// follow streams live output until the container stops.
	e.mustJSON(t, "POST", "/containers/create?name=cc", `{"Image":"busybox","Cmd":["cat"],"OpenStdin":true,"StdinOnce":true}`, 201, nil)
	e.mustJSON(t, "POST", "/containers/cc/start", "", 204, nil)
	got := make(chan string, 1)
	go func() {
		resp, err := e.client().Get("http://docker/containers/cc/logs?stdout=1&follow=1")
		if err != nil {
			got <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var o bytes.Buffer
		_, _ = io.Copy(&o, bytes.NewReader(b))
		got <- o.String()
	}()
	time.Sleep(50 * time.Millisecond) // let the follower start: output before it is replayed anyway
	h := e.hijack(t, "/containers/cc/attach?stream=1&stdin=1", "", true)
	_, _ = h.conn.Write([]byte("live\n"))
	_ = h.conn.CloseWrite()
	h.rest(t)
	select {
	case s := <-got:
		if o, _ := demux(t, []byte(s)); o != "live\n" {
			t.Errorf("followed logs: %q", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("logs --follow did not end with the container")
	}
}

func mustBody(_ *http.Response, b []byte) []byte { return b }

func TestStats(t *testing.T) {
	e, _, _ := startFake(t)
	e.mustJSON(t, "POST", "/containers/create?name=ss", `{"Image":"busybox","Cmd":["sleep"]}`, 201, nil)
	e.mustJSON(t, "POST", "/containers/ss/start", "", 204, nil)

	resp, err := e.client().Get("http://docker/containers/ss/stats")
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(resp.Body)
	var samples []container.StatsResponse
	for range 3 {
		var s container.StatsResponse
		if err := dec.Decode(&s); err != nil {
			t.Fatal(err)
		}
		samples = append(samples, s)
	}
	resp.Body.Close()
	if samples[0].PreCPUStats.CPUUsage.TotalUsage != 0 || !samples[0].PreRead.IsZero() {
		t.Errorf("first sample has a previous one: %+v", samples[0].PreCPUStats)
	}
	for i := 1; i < 3; i++ {
		if samples[i].PreCPUStats.CPUUsage.TotalUsage != samples[i-1].CPUStats.CPUUsage.TotalUsage || !samples[i].PreRead.Equal(samples[i-1].Read) {
			t.Errorf("sample %d: precpu %d, previous cpu %d", i, samples[i].PreCPUStats.CPUUsage.TotalUsage, samples[i-1].CPUStats.CPUUsage.TotalUsage)
		}
		if samples[i].CPUStats.CPUUsage.TotalUsage <= samples[i].PreCPUStats.CPUUsage.TotalUsage {
			t.Errorf("sample %d: cpu did not advance", i)
		}
	}
	for _, tt := range []struct {
		query  string
		hasPre bool
	}{{"stream=false&one-shot=true", false}, {"stream=0", true}} {
		_, body := e.do(t, "GET", "/containers/ss/stats?"+tt.query, nil, nil)
		dec := json.NewDecoder(strings.NewReader(body))
		var s container.StatsResponse
		if err := dec.Decode(&s); err != nil {
			t.Fatalf("%s: %v %q", tt.query, err, body)
		}
		if dec.More() {
			t.Errorf("%s: more than one sample: %q", tt.query, body)
		}
		if (s.PreCPUStats.CPUUsage.TotalUsage != 0) != tt.hasPre || s.Name != "/ss" {
			t.Errorf("%s: %+v", tt.query, s)
		}
	}
	e.run(t, []step{{"missing", "GET", "/containers/nope/stats", "", 404, "No such container"}})
}

func tarBytes(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for name, data := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		_, _ = tw.Write([]byte(data))
	}
	_ = tw.Close()
	return b.Bytes()
}

func untar(t *testing.T, b []byte) map[string]string {
	t.Helper()
	out := map[string]string{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("reading tar: %v", err)
		}
		d, _ := io.ReadAll(tr)
		out[h.Name] = string(d)
	}
}

func TestArchive(t *testing.T) {
	e, _, _ := startFake(t)
	e.mustJSON(t, "POST", "/containers/create?name=aa", `{"Image":"busybox","Cmd":["sleep"]}`, 201, nil)

	resp, _ := e.do(t, "HEAD", "/containers/aa/archive?path=/etc/hostname", nil, nil)
	var st container.PathStat
	raw, err := base64.StdEncoding.DecodeString(resp.Header.Get(pathStatHeader))
	if err == nil {
		err = json.Unmarshal(raw, &st)
	}
	if resp.StatusCode != 200 || err != nil || st.Name != "hostname" || st.Size != 3 || st.Mode.IsDir() {
		t.Errorf("HEAD archive: %d %v %+v", resp.StatusCode, err, st)
	}
	if resp, _ := e.do(t, "HEAD", "/containers/aa/archive?path=/nothing", nil, nil); resp.StatusCode != 404 {
		t.Errorf("HEAD missing path: %d", resp.StatusCode)
	}
	resp, body := e.do(t, "PUT", "/containers/aa/archive?path=/etc&noOverwriteDirNonDir=true", bytes.NewReader(tarBytes(t, map[string]string{"new.txt": "fresh"})), map[string]string{"Content-Type": "application/x-tar"})
	if resp.StatusCode != 200 {
		t.Fatalf("PUT archive: %d %s", resp.StatusCode, body)
	}
	resp, body = e.do(t, "GET", "/containers/aa/archive?path=/etc/new.txt", nil, nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-tar" || resp.Header.Get(pathStatHeader) == "" {
		t.Fatalf("GET archive: %d %v", resp.StatusCode, resp.Header)
	}
	if files := untar(t, []byte(body)); files["new.txt"] != "fresh" || len(files) != 1 {
		t.Errorf("GET archive files: %v", files)
	}
	_, body = e.do(t, "GET", "/containers/aa/archive?path=/etc", nil, nil)
	if files := untar(t, []byte(body)); files["etc/new.txt"] != "fresh" || files["etc/hostname"] != "aa\n" {
		t.Errorf("GET archive of a directory: %v", files)
	}
	var changes []container.FilesystemChange
	e.mustJSON(t, "GET", "/containers/aa/changes", "", 200, &changes)
	if len(changes) != 1 || changes[0].Path != "/etc/new.txt" || changes[0].Kind != container.ChangeAdd {
		t.Errorf("changes: %+v", changes)
	}
	resp, body = e.do(t, "GET", "/containers/aa/export", nil, nil)
	if files := untar(t, []byte(body)); resp.StatusCode != 200 || files["etc/new.txt"] != "fresh" {
		t.Errorf("export: %d %v", resp.StatusCode, files)
	}
	e.run(t, []step{
		{"no path", "GET", "/containers/aa/archive", "", 400, "path cannot be empty"},
		{"missing path", "GET", "/containers/aa/archive?path=/nothing", "", 404, "Could not find the file /nothing"},
		{"missing container", "GET", "/containers/nope/archive?path=/", "", 404, "No such container: nope"},
		{"put into a file", "PUT", "/containers/aa/archive?path=/etc/hostname", "", 400, "not a directory"},
		{"put garbage", "PUT", "/containers/aa/archive?path=/etc", "not a tar archive but long enough to not be a short read ........................................................................................................................................................................................................................................................................................................................................................................................................................................................................", 400, "archive"},
		{"export missing", "GET", "/containers/nope/export", "", 404, "No such container"},
		{"changes missing", "GET", "/containers/nope/changes", "", 404, "No such container"},
	})
}
