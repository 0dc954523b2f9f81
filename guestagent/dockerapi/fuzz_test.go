package dockerapi

import (
	"net/http/httptest"
	"testing"

	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/registry"

	"github.com/berthvm/berth/guestagent/engine"
)

// FuzzDecodeRequest feeds outside input to every decoder of the server:
// the path (version prefix, image names), the query (filters, times,
// platform, tags) and a JSON body. Nothing may panic, and every refusal
// must be a 400.
func FuzzDecodeRequest(f *testing.F) {
	f.Add("/v1.47/images/localhost:5000/a/b:c/json", `filters={"dangling":{"true":true}}&since=1700000000.5&platform=linux/arm64/v8&fromImage=a&tag=b`, `{"username":"u","password":"p","serveraddress":"127.0.0.1:5000"}`)
	f.Add("/v1.2/x", `filters={"type":["image"],"label":["a=b"]}&until=12.000000001`, `{"auth":"dTpw"} `)
	f.Add("/images/json", `filters=%7Bbad&platform={"os":"linux"}`, `[`)
	f.Add("/v99999999999.1/", `since=-1&tag=sha256:x`, `{"username":5}`)
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
	})
}
