package dockerapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/types/system"

	"github.com/berthvm/berth/guestagent/engine"
	"github.com/berthvm/berth/images"
)

// API versions served. APIVersion is the version of the wire types in
// github.com/moby/moby/api; clients negotiate down to theirs (docker 28.x
// speaks 1.50) and the handlers answer in the shape of the version asked.
const (
	APIVersion    = "1.56"
	MinAPIVersion = "1.24"
)

// Config is what the API server serves from.
type Config struct {
	// Images is the image store (required).
	Images *images.Store
	// Containers is the container engine; nil until it exists, and then
	// container routes answer 501.
	Containers engine.Containers
	// Volumes is the named volume store; nil answers volume routes with
	// 501. When it also has Usage (see volumeUsager), `docker system df`
	// reports volume sizes.
	Volumes engine.Volumes
	// BridgeSubnet and BridgeInterface describe the default "bridge"
	// network in `docker network inspect` (172.17.0.0/16 and berth0 when
	// empty, netctl's defaults).
	BridgeSubnet, BridgeInterface string
	// Events is the hub behind GET /events; a private one is made when nil.
	Events *engine.Events
	// Name is the daemon's host name in `docker info` (os.Hostname when
	// empty), ID its stable ID, RootDir its DockerRootDir, Version its
	// version (berth's).
	Name, ID, RootDir, Version string
	// Info, when set, edits the `docker info` answer last (the guest
	// agent adds what only it knows: proxies, labels, warnings).
	Info func(*system.Info)
	// InsecureRegistries are host[:port] that POST /auth reaches over
	// plain HTTP (loopback registries always are). Transport is the base
	// HTTP transport for it (http.DefaultTransport when nil).
	InsecureRegistries []string
	Transport          http.RoundTripper
	// Log defaults to slog.Default().
	Log *slog.Logger
}

// Events returns the hub the server publishes to and streams from.
func (s *Server) Events() *engine.Events { return s.events }

// Server is the Docker API handler. Make one with New.
type Server struct {
	cfg    Config
	log    *slog.Logger
	events *engine.Events
	mux    *http.ServeMux
	start  time.Time
	// statsInterval is the period of streamed stats (1 s, as dockerd;
	// tests shorten it).
	statsInterval time.Duration
	// networks are the predefined networks, IDs fixed at New.
	networks []predefinedNetwork
}

var _ http.Handler = (*Server)(nil)

// New returns the Docker API handler for cfg.
func New(cfg Config) *Server {
	s := &Server{cfg: cfg, log: cfg.Log, events: cfg.Events, mux: http.NewServeMux(), start: time.Now(), statsInterval: time.Second}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.events == nil {
		s.events = engine.NewEvents(engine.EventsOptions{})
	}
	if s.cfg.Name == "" {
		s.cfg.Name, _ = os.Hostname()
	}
	if s.cfg.Version == "" {
		s.cfg.Version = "dev"
	}
	s.networks = s.predefinedNetworks()
	s.routes()
	return s
}

func (s *Server) routes() {
	m := s.mux
	m.HandleFunc("GET /_ping", s.ping)
	m.HandleFunc("HEAD /_ping", s.ping)
	m.HandleFunc("GET /version", s.version)
	m.HandleFunc("GET /info", s.info)
	m.HandleFunc("GET /events", s.eventsStream)
	m.HandleFunc("GET /system/df", s.diskUsage)
	m.HandleFunc("POST /auth", s.auth)

	m.HandleFunc("GET /images/json", s.imageList)
	m.HandleFunc("POST /images/create", s.imagePull)
	m.HandleFunc("GET /images/get", s.imageSaveMany)
	m.HandleFunc("POST /images/load", s.imageLoad)
	m.HandleFunc("POST /images/prune", s.imagePrune)
	m.HandleFunc("GET /images/search", s.notImplemented("image search"))
	m.HandleFunc("GET /images/{rest...}", s.imageGet)
	m.HandleFunc("POST /images/{rest...}", s.imagePost)
	m.HandleFunc("DELETE /images/{rest...}", s.imageDelete)

	s.containerRoutes(m)
	s.volumeRoutes(m)
	s.networkRoutes(m)
	m.HandleFunc("POST /build/prune", s.buildPrune)
	m.HandleFunc("GET /plugins", s.pluginList)
	m.HandleFunc("GET /plugins/{rest...}", s.pluginInspect)
	for _, p := range []string{"/build", "/build/", "/plugins/", "/session", "/grpc", "/swarm", "/swarm/", "/nodes", "/services", "/tasks", "/secrets", "/configs", "/distribution/"} {
		m.HandleFunc(p, s.notImplemented(strings.Trim(p, "/")))
	}
}

// ServeHTTP strips and checks the /vX.Y prefix, then routes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	version, path, err := splitVersion(r.URL.Path)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	r2 := r.WithContext(withVersion(r.Context(), version))
	u := *r.URL
	u.Path, u.RawPath = path, ""
	r2.URL = &u
	w.Header().Set("Server", "berth/"+s.cfg.Version+" (linux)")
	w.Header().Set("Api-Version", APIVersion)
	if _, pattern := s.mux.Handler(r2); pattern == "" {
		s.writeError(w, r2, notFoundf("page not found"))
		return
	}
	s.mux.ServeHTTP(w, r2)
}

func (s *Server) notImplemented(what string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		// "not supported" lets `docker inspect` skip the object type.
		s.writeError(w, r, notImplementedf("%s is not supported by berth yet", what))
	}
}

// apiVersion is a major.minor API version, comparable.
type apiVersion struct{ major, minor int }

func parseVersion(v string) (apiVersion, bool) {
	maj, min, ok := strings.Cut(v, ".")
	if !ok {
		return apiVersion{}, false
	}
	a, err1 := strconv.Atoi(maj)
	b, err2 := strconv.Atoi(min)
	if err1 != nil || err2 != nil || a < 0 || b < 0 || len(maj) > 4 || len(min) > 4 {
		return apiVersion{}, false
	}
	return apiVersion{a, b}, true
}

func (v apiVersion) less(o apiVersion) bool {
	return v.major < o.major || v.major == o.major && v.minor < o.minor
}

func (v apiVersion) String() string { return fmt.Sprintf("%d.%d", v.major, v.minor) }

var (
	maxVersion, _ = parseVersion(APIVersion)
	minVersion, _ = parseVersion(MinAPIVersion)
)

// splitVersion takes "/v1.47/images/json" apart. A path without prefix is
// served at the current version, as dockerd does.
func splitVersion(p string) (apiVersion, string, error) {
	if len(p) < 3 || p[0] != '/' || p[1] != 'v' || p[2] < '0' || p[2] > '9' {
		return maxVersion, p, nil
	}
	rest := p[2:]
	vs, tail, ok := strings.Cut(rest, "/")
	v, valid := parseVersion(vs)
	if !valid {
		return maxVersion, p, nil // not a version prefix: routes to 404
	}
	if !ok {
		tail = ""
	}
	if v.less(minVersion) {
		return v, "", invalidf("client version %s is too old. Minimum supported API version is %s, please upgrade your client to a newer version", v, MinAPIVersion)
	}
	if maxVersion.less(v) {
		return v, "", invalidf("client version %s is too new. Maximum supported API version is %s", v, APIVersion)
	}
	return v, "/" + tail, nil
}

type versionKey struct{}

func withVersion(ctx context.Context, v apiVersion) context.Context {
	return context.WithValue(ctx, versionKey{}, v)
}

// versionOf is the API version of the request.
func versionOf(r *http.Request) apiVersion {
	if v, ok := r.Context().Value(versionKey{}).(apiVersion); ok {
		return v
	}
	return maxVersion
}

// before reports whether the request's API version is older than v.
func before(r *http.Request, v string) bool {
	want, _ := parseVersion(v)
	return versionOf(r).less(want)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// Serve serves h on l until ctx ends, then closes open connections (event
// streams and pulls never end on their own).
func Serve(ctx context.Context, l net.Listener, h http.Handler) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 30 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	served := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case <-ctx.Done():
		case <-served:
			return
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			_ = srv.Close()
		}
	}()
	err := srv.Serve(l)
	close(served)
	<-done
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("serving docker api: %w", err)
}
