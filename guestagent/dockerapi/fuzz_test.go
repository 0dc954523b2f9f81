package dockerapi

import (
	"net/http/httptest"
	"testing"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/registry"

	"github.com/berthvm/berth/guestagent/engine"
)

// FuzzDecodeRequest feeds outside input to every decoder of the server:
// the path (version prefix, image names), the query (filters, times,
// platform, tags, names, detach keys, sizes) and a JSON body (auth,
// container create at old and current API versions, exec create, exec
// start). Nothing may panic, and every refusal must be a 400.
func FuzzDecodeRequest(f *testing.F) {
	f.Add("/v1.47/images/localhost:5000/a/b:c/json", `filters={"dangling":{"true":true}}&since=1700000000.5&platform=linux/arm64/v8&fromImage=a&tag=b`, `{"username":"u","password":"p","serveraddress":"127.0.0.1:5000"}`)
	f.Add("/v1.2/x", `filters={"type":["image"],"label":["a=b"]}&until=12.000000001`, `{"auth":"dTpw"} `)
	f.Add("/images/json", `filters=%7Bbad&platform={"os":"linux"}`, `[`)
	f.Add("/v99999999999.1/", `since=-1&tag=sha256:x`, `{"username":5}`)
	f.Add("/v1.50/containers/create", `name=/web&detachKeys=ctrl-p,ctrl-q&h=24&w=80&t=10&tail=all`, `{"Image":"busybox","Cmd":["sh"],"MacAddress":"02:42:ac:11:00:02","HostConfig":{"NetworkMode":"bridge","PortBindings":{"80/tcp":[{"HostIp":"127.0.0.1","HostPort":"8080"}]}},"NetworkingConfig":{"EndpointsConfig":{"bridge":{"IPAMConfig":{"IPv4Address":"172.17.0.9"}}}}}`)
	f.Add("/containers/x/exec", `name=a&detachKeys=ctrl-&h=-1&repo=r&tag=a/b`, `{"Cmd":["ls"],"AttachStdin":true,"DetachKeys":"ctrl-x,y","ConsoleSize":[24,80],"Tty":true}`)
	f.Add("/exec/x/start", `t=x&w=99999999`, `{"Detach":false,"Tty":true,"ConsoleSize":[1,2]}`)
	f.Fuzz(func(t *testing.T, path, rawQuery, body string) {
		check := func(what string, err error) {
			if err != nil && statusOf(err) != 400 {
				t.Fatalf("%s: status %d for %v", what, statusOf(err), err)
			}
		}
		_, p, err := splitVersion("/" + path)
		check("version", err)
		if err == nil {
			splitImagePath(p)
		}
		r := httptest.NewRequest("GET", "/x", nil)
		r.URL.RawQuery = rawQuery
		q, err := parseQuery(r)
		check("query", err)
		if err != nil {
			return
		}
		fl, err := q.filters()
		check("filters", err)
		if err == nil {
			ef := engine.EventFilter(fl)
			if ef.Validate() == nil {
				ef.Match(events.Message{Type: events.ImageEventType, Action: events.ActionPull, Actor: events.Actor{ID: "busybox:latest", Attributes: map[string]string{"name": "x"}}})
			}
		}
		_, err = parseEventTime(q.get("since"))
		check("since", err)
		_, err = parsePlatform(q.get("platform"))
		check("platform", err)
		_, err = pullRef(q.get("fromImage"), q.get("tag"))
		check("pullRef", err)
		_, err = q.int("limit", 0)
		check("limit", err)
		q.bool("all")
		var auth registry.AuthConfig
		check("body", decodeJSONBytes([]byte(body), &auth, false))

		// Container and exec requests.
		for _, v := range []apiVersion{{1, 43}, {1, 50}, maxVersion} {
			cr := r.WithContext(withVersion(r.Context(), v))
			req, err := decodeCreate(cr, []byte(body))
			check("create", err)
			if err == nil && (req.Config == nil || req.HostConfig == nil) {
				t.Fatalf("create accepted without Config/HostConfig: %q", body)
			}
		}
		x, err := decodeExecCreate([]byte(body))
		check("exec create", err)
		if err == nil && len(x.Cmd) == 0 {
			t.Fatalf("exec create accepted without Cmd: %q", body)
		}
		var start container.ExecStartRequest
		check("exec start", decodeJSONBytes([]byte(body), &start, true))
		check("name", checkContainerName(q.get("name")))
		keys, err := engine.ParseDetachKeys(q.get("detachKeys"))
		check("detachKeys", err)
		if err == nil && len(keys) == 0 {
			t.Fatalf("no detach keys from %q", q.get("detachKeys"))
		}
		_, err = commitRef(q.get("repo"), q.get("tag"))
		check("commit ref", err)
		_, err = stopOptions(r)
		check("stop options", err)
		_, _, err = sizeParams(r)
		check("size", err)
		parseTail(q.get("tail"))
	})
}
