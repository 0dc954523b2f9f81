package dockerapi

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"

	"github.com/berthvm/berth/guestagent/engine"
)

// containerRoutes registers the container, exec and commit routes. Each
// handler is thin: decode, call engine.Containers, encode.
func (s *Server) containerRoutes(m *http.ServeMux) {
	c := func(pattern string, h func(http.ResponseWriter, *http.Request, engine.Containers)) {
		m.HandleFunc(pattern, s.withContainers(h))
	}
	c("GET /containers/json", s.containerList)
	c("POST /containers/create", s.containerCreate)
	c("POST /containers/prune", s.containerPrune)
	c("GET /containers/{id}/json", s.containerInspect)
	c("POST /containers/{id}/start", s.containerStart)
	c("POST /containers/{id}/stop", s.containerStop)
	c("POST /containers/{id}/restart", s.containerRestart)
	c("POST /containers/{id}/kill", s.containerKill)
	c("POST /containers/{id}/pause", s.containerPause)
	c("POST /containers/{id}/unpause", s.containerUnpause)
	c("POST /containers/{id}/wait", s.containerWait)
	c("POST /containers/{id}/rename", s.containerRename)
	c("POST /containers/{id}/resize", s.containerResize)
	c("DELETE /containers/{id}", s.containerRemove)
	c("GET /containers/{id}/top", s.containerTop)
	c("GET /containers/{id}/logs", s.containerLogs)
	c("GET /containers/{id}/stats", s.containerStats)
	c("GET /containers/{id}/changes", s.containerChanges)
	c("GET /containers/{id}/export", s.containerExport)
	c("HEAD /containers/{id}/archive", s.archiveStat)
	c("GET /containers/{id}/archive", s.archiveGet)
	c("PUT /containers/{id}/archive", s.archivePut)
	c("POST /containers/{id}/attach", s.containerAttach)
	c("POST /containers/{id}/exec", s.execCreate)
	c("POST /commit", s.commit)
	c("POST /exec/{id}/start", s.execStart)
	c("POST /exec/{id}/resize", s.execResize)
	c("GET /exec/{id}/json", s.execInspect)
	m.HandleFunc("GET /containers/{id}/attach/ws", s.notImplemented("attaching over a websocket"))
	m.HandleFunc("POST /containers/{id}/update", s.notImplemented("docker update"))
	m.HandleFunc("/containers/{id}/checkpoints", s.notImplemented("checkpoints"))
}

// withContainers answers 501 while there is no engine.
func (s *Server) withContainers(h func(http.ResponseWriter, *http.Request, engine.Containers)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c := s.cfg.Containers
		if c == nil {
			s.writeError(w, r, notImplementedf("berth's container engine is not running: containers are not supported here"))
			return
		}
		h(w, r, c)
	}
}

// validContainerName is dockerd's rule for names (the "/" is optional).
var validContainerName = regexp.MustCompile(`^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

func checkContainerName(name string) error {
	if !validContainerName.MatchString(name) {
		return invalidf("Invalid container name (%s), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", name)
	}
	return nil
}

// checkFilters refuses filter keys the endpoint does not know, as
// dockerd does.
func checkFilters(f map[string][]string, allowed ...string) error {
	for k := range f {
		ok := false
		for _, a := range allowed {
			ok = ok || k == a
		}
		if !ok {
			return invalidf("invalid filter '%s'", k)
		}
	}
	return nil
}

// containerList serves GET /containers/json (docker ps).
func (s *Server) containerList(w http.ResponseWriter, r *http.Request, c engine.Containers) {
	q, err := parseQuery(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	f, err := q.filters()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	limit, err := q.int("limit", -1)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	list, err := c.List(r.Context(), engine.ListOptions{All: q.bool("all"), Limit: limit, Size: q.bool("size"), Filters: f})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if list == nil {
		list = []container.Summary{}
	}
	writeJSON(w, http.StatusOK, list)
}

// decodeCreate reads a POST /containers/create body. API < 1.52 may set
// the container-wide Config.MacAddress, which dockerd then applies to
// the endpoint of the container's network.
func decodeCreate(r *http.Request, body []byte) (container.CreateRequest, error) {
	var req container.CreateRequest
	if err := decodeJSONBytes(body, &req, false); err != nil {
		return req, err
	}
	if req.Config == nil {
		return req, invalidf("config cannot be empty in order to create a container")
	}
	if req.HostConfig == nil {
		req.HostConfig = &container.HostConfig{}
	}
	if before(r, "1.52") {
		var legacy struct{ MacAddress string }
		_ = json.Unmarshal(body, &legacy) // the body decoded above
		if legacy.MacAddress != "" {
			var mac network.HardwareAddr
			if err := mac.UnmarshalText([]byte(legacy.MacAddress)); err != nil {
				return req, invalidf("invalid MAC address %q: %v", legacy.MacAddress, err)
			}
			mode := string(req.HostConfig.NetworkMode)
			if mode == "" || mode == "default" {
				mode = "bridge"
			}
			if req.NetworkingConfig == nil {
				req.NetworkingConfig = &network.NetworkingConfig{}
			}
			if req.NetworkingConfig.EndpointsConfig == nil {
				req.NetworkingConfig.EndpointsConfig = map[string]*network.EndpointSettings{}
			}
			ep := req.NetworkingConfig.EndpointsConfig[mode]
			if ep == nil {
				ep = &network.EndpointSettings{}
				req.NetworkingConfig.EndpointsConfig[mode] = ep
			}
			if len(ep.MacAddress) == 0 {
				ep.MacAddress = mac
			}
		}
	}
	return req, nil
}

// containerCreate serves POST /containers/create.
func (s *Server) containerCreate(w http.ResponseWriter, r *http.Request, c engine.Containers) {
	q, err := parseQuery(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	name := q.get("name")
	if name != "" {
		if err := checkContainerName(name); err != nil {
			s.writeError(w, r, err)
			return
		}
		name = strings.TrimPrefix(name, "/")
	}
	plat, err := parsePlatform(q.get("platform"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	platform := ""
	if plat != nil {
		platform = plat.OS
		if plat.Architecture != "" {
			platform += "/" + plat.Architecture
			if plat.Variant != "" {
				platform += "/" + plat.Variant
			}
		}
	}
	body, err := readBody(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	req, err := decodeCreate(r, body)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	resp, err := c.Create(r.Context(), engine.CreateOptions{
		Name:       name,
		Config:     req.Config,
		HostConfig: req.HostConfig,
		Networking: req.NetworkingConfig,
		Platform:   platform,
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if resp.Warnings == nil {
		resp.Warnings = []string{}
	}
	writeJSON(w, http.StatusCreated, resp)
}

// legacyNetworkSettings adds the fields API < 1.52 still returned
// (`docker inspect -f '{{.NetworkSettings.IPAddress}}'` is a common
// idiom), taken from the default bridge endpoint.
type legacyNetworkSettings struct {
	*container.NetworkSettings
	Bridge                 string
	HairpinMode            bool
	LinkLocalIPv6Address   string
	LinkLocalIPv6PrefixLen int
	SecondaryIPAddresses   []string
	SecondaryIPv6Addresses []string
	EndpointID             string
	Gateway                string
	GlobalIPv6Address      string
	GlobalIPv6PrefixLen    int
	IPAddress              string
	IPPrefixLen            int
	IPv6Gateway            string
	MacAddress             string
}

type legacyInspect struct {
	container.InspectResponse
	NetworkSettings *legacyNetworkSettings
}

func ipString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func toLegacyInspect(in container.InspectResponse) legacyInspect {
	out := legacyInspect{InspectResponse: in}
	if in.NetworkSettings == nil {
		return out
	}
	ls := &legacyNetworkSettings{NetworkSettings: in.NetworkSettings}
	ep := in.NetworkSettings.Networks["bridge"]
	if ep == nil && len(in.NetworkSettings.Networks) == 1 {
		for _, e := range in.NetworkSettings.Networks {
			ep = e
		}
	}
	if ep != nil {
		ls.EndpointID = ep.EndpointID
		ls.Gateway = ipString(ep.Gateway)
		ls.IPAddress = ipString(ep.IPAddress)
		ls.IPPrefixLen = ep.IPPrefixLen
		ls.IPv6Gateway = ipString(ep.IPv6Gateway)
		ls.GlobalIPv6Address = ipString(ep.GlobalIPv6Address)
		ls.GlobalIPv6PrefixLen = ep.GlobalIPv6PrefixLen
		ls.MacAddress = ep.MacAddress.String()
	}
	out.NetworkSettings = ls
	return out
}

// containerInspect serves GET /containers/{id}/json.
func (s *Server) containerInspect(w http.ResponseWriter, r *http.Request, c engine.Containers) {
	q, err := parseQuery(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	id := r.PathValue("id")
	insp, err := c.Inspect(r.Context(), id, q.bool("size"))
	if err != nil {
		s.writeError(w, r, noSuch("container", id, err))
		return
	}
	if before(r, "1.52") {
		writeJSON(w, http.StatusOK, toLegacyInspect(insp))
		return
	}
	writeJSON(w, http.StatusOK, insp)
}

// noContent answers a state change: 204, or the error.
func (s *Server) noContent(w http.ResponseWriter, r *http.Request, id string, err error) {
	if err != nil {
		s.writeError(w, r, noSuch("container", id, err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) containerStart(w http.ResponseWriter, r *http.Request, c engine.Containers) {
	id := r.PathValue("id")
	s.noContent(w, r, id, c.Start(r.Context(), id))
}

// stopOptions reads ?t= and ?signal= of stop and restart.
func stopOptions(r *http.Request) (engine.StopOptions, error) {
	q, err := parseQuery(r)
	if err != nil {
		return engine.StopOptions{}, err
	}
	opts := engine.StopOptions{Signal: q.get("signal")}
	if t := q.get("t"); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil {
			return opts, invalidf("invalid value for t: %q: want seconds", t)
		}
		opts.Timeout = &n
	}
	return opts, nil
}

func (s *Server) containerStop(w http.ResponseWriter, r *http.Request, c engine.Containers) {
	id := r.PathValue("id")
	opts, err := stopOptions(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.noContent(w, r, id, c.Stop(r.Context(), id, opts))
}

func (s *Server) containerRestart(w http.ResponseWriter, r *http.Request, c engine.Containers) {
	id := r.PathValue("id")
	opts, err := stopOptions(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.noContent(w, r, id, c.Restart(r.Context(), id, opts))
}

func (s *Server) containerKill(w http.ResponseWriter, r *http.Request, c engine.Containers) {
	id := r.PathValue("id")
	q, err := parseQuery(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.noContent(w, r, id, c.Kill(r.Context(), id, q.get("signal")))
}

func (s *Server) containerPause(w http.ResponseWriter, r *http.Request, c engine.Containers) {
	id := r.PathValue("id")
	s.noContent(w, r, id, c.Pause(r.Context(), id))
}

func (s *Server) containerUnpause(w http.ResponseWriter, r *http.Request, c engine.Containers) {
	id := r.PathValue("id")
	s.noContent(w, r, id, c.Unpause(r.Context(), id))
}

func (s *Server) containerRename(w http.ResponseWriter, r *http.Request, c engine.Containers) {
	id := r.PathValue("id")
	q, err := parseQuery(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	name := q.get("name")
	if name == "" {
		s.writeError(w, r, invalidf("Neither old nor new names may be empty"))
		return
	}
	if err := checkContainerName(name); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.noContent(w, r, id, c.Rename(r.Context(), id, strings.TrimPrefix(name, "/")))
}

func (s *Server) containerRemove(w http.ResponseWriter, r *http.Request, c engine.Containers) {
	id := r.PathValue("id")
	q, err := parseQuery(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if q.bool("link") {
		s.writeError(w, r, notImplementedf("legacy container links are not supported by berth"))
		return
	}
	s.noContent(w, r, id, c.Remove(r.Context(), id, engine.RemoveOptions{Force: q.bool("force"), Volumes: q.bool("v")}))
}

// containerPrune serves POST /containers/prune.
func (s *Server) containerPrune(w http.ResponseWriter, r *http.Request, c engine.Containers) {
	q, err := parseQuery(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	f, err := q.filters()
	if err == nil {
		err = checkFilters(f, "until", "label", "label!")
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	rep, err := c.Prune(r.Context(), f)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if rep.ContainersDeleted == nil {
		rep.ContainersDeleted = []string{}
	}
	writeJSON(w, http.StatusOK, rep)
}

// sizeParams reads ?h= and ?w= of the resize endpoints.
func sizeParams(r *http.Request) (h, w uint, err error) {
	q, err := parseQuery(r)
	if err != nil {
		return 0, 0, err
	}
	read := func(k string) (uint, error) {
		n, err := strconv.ParseUint(q.get(k), 10, 16)
		if err != nil {
			return 0, invalidf("invalid value for %s: %q: want a terminal size", k, q.get(k))
		}
		return uint(n), nil
	}
	if h, err = read("h"); err != nil {
		return 0, 0, err
	}
	if w, err = read("w"); err != nil {
		return 0, 0, err
	}
	return h, w, nil
}

func (s *Server) containerResize(w http.ResponseWriter, r *http.Request, c engine.Containers) {
	id := r.PathValue("id")
	height, width, err := sizeParams(r)
	if err == nil {
		err = c.Resize(r.Context(), id, height, width)
	}
	if err != nil {
		s.writeError(w, r, noSuch("container", id, err))
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (s *Server) containerTop(w http.ResponseWriter, r *http.Request, c engine.Containers) {
	id := r.PathValue("id")
	q, err := parseQuery(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	top, err := c.Top(r.Context(), id, q.get("ps_args"))
	if err != nil {
		s.writeError(w, r, noSuch("container", id, err))
		return
	}
	writeJSON(w, http.StatusOK, top)
}

// waitBody is the body of POST .../wait: dockerd sends "Error": null.
type waitBody struct {
	StatusCode int64
	Error      *container.WaitExitError
}

// containerWait serves POST /containers/{id}/wait. As dockerd, the 200
// header goes out at once, so the client knows the wait is registered
// (docker run waits before it starts); the body follows on exit.
func (s *Server) containerWait(w http.ResponseWriter, r *http.Request, c engine.Containers) {
	id := r.PathValue("id")
	q, err := parseQuery(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	cond := container.WaitCondition(q.get("condition"))
	switch cond {
	case "":
		cond = container.WaitConditionNotRunning
	case container.WaitConditionNotRunning, container.WaitConditionNextExit, container.WaitConditionRemoved:
	default:
		s.writeError(w, r, invalidf("invalid condition: %q", cond))
		return
	}
	ctx := r.Context()
	ch, err := c.Wait(ctx, id, cond)
	if err != nil {
		s.writeError(w, r, noSuch("container", id, err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_ = http.NewResponseController(w).Flush()
	select {
	case <-ctx.Done():
	case res, ok := <-ch:
		if !ok {
			return
		}
		_ = json.NewEncoder(w).Encode(waitBody{StatusCode: res.StatusCode, Error: res.Error})
	}
}

func (s *Server) containerChanges(w http.ResponseWriter, r *http.Request, c engine.Containers) {
	id := r.PathValue("id")
	ch, err := c.Changes(r.Context(), id)
	if err != nil {
		s.writeError(w, r, noSuch("container", id, err))
		return
	}
	if ch == nil {
		ch = []container.FilesystemChange{}
	}
	writeJSON(w, http.StatusOK, ch)
}

func (s *Server) containerExport(w http.ResponseWriter, r *http.Request, c engine.Containers) {
	id := r.PathValue("id")
	st := s.newStream(w, r, "application/x-tar")
	st.finish(noSuch("container", id, c.Export(r.Context(), id, st)))
}

// commit serves POST /commit (docker commit).
func (s *Server) commit(w http.ResponseWriter, r *http.Request, c engine.Containers) {
	q, err := parseQuery(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	name := q.get("container")
	if name == "" {
		s.writeError(w, r, invalidf("no container given: the container parameter is required"))
		return
	}
	var cfg *container.Config
	if err := decodeJSON(r.Body, &cfg, true); err != nil {
		s.writeError(w, r, err)
		return
	}
	ref, err := commitRef(q.get("repo"), q.get("tag"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	pause := true // dockerd pauses unless told not to
	if q.get("pause") != "" {
		pause = q.bool("pause")
	}
	id, err := c.Commit(r.Context(), name, engine.CommitOptions{
		Reference: ref,
		Author:    q.get("author"),
		Comment:   q.get("comment"),
		Changes:   q.all("changes"),
		Pause:     pause,
		Config:    cfg,
	})
	if err != nil {
		s.writeError(w, r, noSuch("container", name, err))
		return
	}
	writeJSON(w, http.StatusCreated, container.CommitResponse{ID: id})
}

// commitRef joins repo and tag; a tag needs a repository.
func commitRef(repo, tag string) (string, error) {
	switch {
	case repo == "" && tag != "":
		return "", invalidf("invalid reference: tag %q given without a repository", tag)
	case repo == "":
		return "", nil
	case tag == "":
		return repo, nil
	case strings.ContainsAny(tag, "/@: "):
		return "", invalidf("invalid tag %q", tag)
	}
	return repo + ":" + tag, nil
}

// readBody reads a bounded JSON body (nil body: empty).
func readBody(r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, maxJSONBody+1))
	if err != nil {
		return nil, invalidf("reading request body: %v", err)
	}
	if len(data) > maxJSONBody {
		return nil, invalidf("request body is larger than %d bytes", maxJSONBody)
	}
	return data, nil
}

// streamInfo is what attach and logs need to know of a container.
type streamInfo struct {
	tty, openStdin, stdinOnce bool
}

func containerStreams(ctx context.Context, c engine.Containers, id string) (streamInfo, error) {
	insp, err := c.Inspect(ctx, id, false)
	if err != nil {
		return streamInfo{}, noSuch("container", id, err)
	}
	if insp.Config == nil {
		return streamInfo{}, nil
	}
	return streamInfo{tty: insp.Config.Tty, openStdin: insp.Config.OpenStdin, stdinOnce: insp.Config.StdinOnce}, nil
}
