package dockerapi

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/api/types/system"
	"github.com/moby/moby/api/types/volume"
)

func TestVolumeRoutes(t *testing.T) {
	e, _, fv := startFake(t)
	start := time.Now()
	var v volume.Volume
	e.mustJSON(t, "POST", "/volumes/create", `{"Name":"data","Labels":{"tier":"db"}}`, 201, &v)
	if v.Name != "data" || v.Driver != "local" || v.Labels["tier"] != "db" {
		t.Errorf("created %+v", v)
	}
	var anon volume.Volume
	e.mustJSON(t, "POST", "/volumes/create", `{"Labels":{"com.docker.volume.anonymous":""}}`, 201, &anon)
	e.mustJSON(t, "POST", "/volumes/create", `{"Name":"cache"}`, 201, nil)
	e.run(t, []step{
		{"create malformed", "POST", "/volumes/create", `{"Name":`, 400, "invalid JSON"},
		{"create short name", "POST", "/volumes/create", `{"Name":"x"}`, 400, "too short"},
		{"create bad name", "POST", "/volumes/create", `{"Name":"/abs/path"}`, 400, "invalid characters"},
		{"create other driver", "POST", "/volumes/create", `{"Name":"nfs1","Driver":"nfs"}`, 404, "plugin"},
		{"create cluster volume", "POST", "/volumes/create", `{"Name":"cv","ClusterVolumeSpec":{}}`, 501, "not supported"},
		{"list bad filter", "GET", "/volumes?filters=" + `{"colour":["red"]}`, "", 400, "invalid filter 'colour'"},
		{"inspect", "GET", "/volumes/data", "", 200, `"Mountpoint":"/var/lib/berth/volumes/data/_data"`},
		{"inspect missing", "GET", "/volumes/nope", "", 404, "No such volume: nope"},
		{"remove missing", "DELETE", "/volumes/nope", "", 404, "no such volume"},
		{"force remove missing", "DELETE", "/volumes/nope?force=1", "", 204, ""},
		{"prune bad filter", "POST", "/volumes/prune?filters=" + `{"dangling":["true"]}`, "", 400, "invalid filter 'dangling'"},
		{"prune all before 1.42", "POST", "/v1.41/volumes/prune?filters=" + `{"all":["true"]}`, "", 400, "invalid filter 'all'"},
		{"update", "PUT", "/volumes/data", `{}`, 501, "not supported"},
	})
	var list volume.ListResponse
	e.mustJSON(t, "GET", "/volumes?filters="+`{"name":["dat"]}`, "", 200, &list)
	if len(list.Volumes) != 1 || list.Volumes[0].Name != "data" || list.Warnings == nil {
		t.Errorf("list by name: %+v", list)
	}
	fv.setInUse("data", true)
	e.run(t, []step{{"remove in use", "DELETE", "/volumes/data", "", 409, "in use"}})

	// Without all=true only anonymous volumes go.
	var rep volume.PruneReport
	e.mustJSON(t, "POST", "/volumes/prune", "", 200, &rep)
	if len(rep.VolumesDeleted) != 1 || rep.VolumesDeleted[0] != anon.Name {
		t.Errorf("prune: %+v", rep)
	}
	var df map[string]json.RawMessage
	e.mustJSON(t, "GET", "/v1.50/system/df", "", 200, &df)
	var vols []volume.Volume
	if err := json.Unmarshal(df["Volumes"], &vols); err != nil || len(vols) != 2 || vols[1].UsageData == nil || vols[1].UsageData.RefCount != 1 || vols[1].UsageData.Size != 4096 {
		t.Errorf("1.50 df volumes: %v %s", err, df["Volumes"])
	}
	var du system.DiskUsage
	e.mustJSON(t, "GET", "/v1.53/system/df?type=volume", "", 200, &du)
	if du.VolumeUsage == nil || du.VolumeUsage.TotalCount != 2 || du.VolumeUsage.ActiveCount != 1 || du.VolumeUsage.TotalSize != 8192 || du.VolumeUsage.Reclaimable != 4096 || du.ImageUsage != nil {
		t.Errorf("1.53 df: %+v", du.VolumeUsage)
	}
	e.mustJSON(t, "POST", "/volumes/prune?filters="+`{"all":["true"]}`, "", 200, &rep)
	if len(rep.VolumesDeleted) != 1 || rep.VolumesDeleted[0] != "cache" {
		t.Errorf("prune all: %+v", rep)
	}
	e.mustJSON(t, "DELETE", "/volumes/data?force=true", "", 204, nil)
	e.mustJSON(t, "GET", "/volumes", "", 200, &list)
	if len(list.Volumes) != 0 {
		t.Errorf("volumes left: %+v", list.Volumes)
	}

	past, sub := e.events.Subscribe(start)
	sub.Close()
	var got []string
	for _, m := range past {
		if m.Type == events.VolumeEventType {
			got = append(got, string(m.Action)+" "+m.Actor.ID+" "+m.Actor.Attributes["driver"])
		}
	}
	want := []string{"create data local", "create " + anon.Name + " local", "create cache local", "destroy " + anon.Name + " ", "prune  ", "destroy cache ", "prune  ", "destroy data local"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("volume events:\n got %q\nwant %q", got, want)
	}
}

func TestNetworkRoutes(t *testing.T) {
	e, _, _ := startFake(t)
	e.mustJSON(t, "POST", "/containers/create?name=web", `{"Image":"busybox","Cmd":["sleep"]}`, 201, nil)
	e.mustJSON(t, "POST", "/containers/web/start", "", 204, nil)
	var list []network.Inspect
	e.mustJSON(t, "GET", "/networks", "", 200, &list)
	hex64 := regexp.MustCompile(`^[0-9a-f]{64}$`)
	var names []string
	for _, n := range list {
		names = append(names, n.Name+"/"+n.Driver)
		if !hex64.MatchString(n.ID) || n.Scope != "local" {
			t.Errorf("network %+v", n.Network)
		}
	}
	if strings.Join(names, " ") != "bridge/bridge host/host none/null" {
		t.Fatalf("networks: %v", names)
	}
	// IDs are stable for a daemon ID, and differ between daemons.
	again := New(Config{ID: "TEST:DAEMON:ID", Log: testLogger()})
	other := New(Config{ID: "OTHER", Log: testLogger()})
	if again.networks[0].ID != list[0].ID || other.networks[0].ID == list[0].ID {
		t.Errorf("network IDs not stable per daemon")
	}
	for _, tt := range []struct{ filter, want string }{
		{`{"name":["bri"]}`, "bridge"},
		{`{"driver":["null"]}`, "none"},
		{`{"id":["` + list[1].ID[:10] + `"]}`, "host"},
		{`{"type":["custom"]}`, ""},
		{`{"type":["builtin"],"name":["o"]}`, "host none"},
		{`{"dangling":["true"]}`, ""},
		{`{"label":["a"]}`, ""},
	} {
		var got []network.Inspect
		e.mustJSON(t, "GET", "/networks?filters="+tt.filter, "", 200, &got)
		var n []string
		for _, g := range got {
			n = append(n, g.Name)
		}
		if strings.Join(n, " ") != tt.want {
			t.Errorf("filter %s: %v, want %q", tt.filter, n, tt.want)
		}
	}
	var br network.Inspect
	e.mustJSON(t, "GET", "/networks/"+list[0].ID[:12], "", 200, &br)
	if br.Name != "bridge" || len(br.IPAM.Config) != 1 || br.IPAM.Config[0].Subnet.String() != "172.17.0.0/16" || br.IPAM.Config[0].Gateway.String() != "172.17.0.1" || br.Options["com.docker.network.bridge.name"] != "berth0" {
		t.Errorf("bridge: %+v", br)
	}
	if len(br.Containers) != 1 {
		t.Fatalf("bridge containers: %+v", br.Containers)
	}
	for _, ep := range br.Containers {
		if ep.Name != "web" || ep.IPv4Address.String() != "172.17.0.2/16" {
			t.Errorf("endpoint %+v", ep)
		}
	}
	var host network.Inspect
	e.mustJSON(t, "GET", "/networks/host", "", 200, &host)
	if host.Driver != "host" || len(host.Containers) != 0 {
		t.Errorf("host: %+v", host)
	}
	var rep network.PruneReport
	e.mustJSON(t, "POST", "/networks/prune", "", 200, &rep)
	if rep.NetworksDeleted == nil || len(rep.NetworksDeleted) != 0 {
		t.Errorf("network prune: %+v", rep)
	}
	var brep build.CachePruneReport
	e.mustJSON(t, "POST", "/build/prune?all=1", "", 200, &brep)
	e.run(t, []step{
		{"missing", "GET", "/networks/nope", "", 404, "network nope not found"},
		{"create", "POST", "/networks/create", `{"Name":"mynet"}`, 501, "user-defined networks are not supported by berth yet"},
		{"connect", "POST", "/networks/bridge/connect", `{"Container":"web"}`, 501, "not supported"},
		{"disconnect", "POST", "/networks/bridge/disconnect", `{"Container":"web"}`, 501, "not supported"},
		{"remove bridge", "DELETE", "/networks/bridge", "", 403, "bridge is a pre-defined network and cannot be removed"},
		{"remove none by ID", "DELETE", "/networks/" + list[2].ID, "", 403, "none is a pre-defined network"},
		{"remove missing", "DELETE", "/networks/mynet", "", 404, "not found"},
		{"bad filter", "GET", "/networks?filters=" + `{"colour":["red"]}`, "", 400, "invalid filter"},
		{"bad type", "GET", "/networks?filters=" + `{"type":["odd"]}`, "", 400, "type"},
		{"prune bad filter", "POST", "/networks/prune?filters=" + `{"colour":["red"]}`, "", 400, "invalid filter"},
		{"plugin inspect", "GET", "/plugins/vieux/sshfs:latest/json", "", 404, `plugin "vieux/sshfs:latest" not found`},
		{"plugin list", "GET", "/plugins", "", 200, "[]"},
	})
}
