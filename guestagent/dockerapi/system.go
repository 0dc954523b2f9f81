package dockerapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/registry"
	"github.com/moby/moby/api/types/system"
	"github.com/moby/moby/api/types/volume"

	"github.com/berthvm/berth/guestagent/engine"
	"github.com/berthvm/berth/images"
)

// facts are the host figures the system endpoints report.
type facts struct {
	kernel        string
	memTotal      int64
	cgroupVersion string
	v1            *v1Limits // which limits a cgroup v1 host can apply
}

// v1Limits are the limits a cgroup v1 (or hybrid) host has controllers for.
type v1Limits struct {
	memory, swap, cfs, shares, cpuset, pids bool
}

func (s *Server) ping(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("API-Version", APIVersion)
	h.Set("Builder-Version", "1")
	h.Set("Docker-Experimental", "false")
	h.Set("OSType", "linux")
	h.Set("Swarm", "inactive")
	h.Set("Cache-Control", "no-cache, no-store, must-revalidate")
	h.Set("Pragma", "no-cache")
	h.Set("Content-Type", "text/plain; charset=utf-8")
	if r.Method == http.MethodHead {
		h.Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
		return
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte("OK"))
}

func goArch() string { return runtime.GOARCH }

func (s *Server) version(w http.ResponseWriter, r *http.Request) {
	f := hostFacts()
	v := system.VersionResponse{
		Platform:      system.PlatformInfo{Name: "berth"},
		Version:       s.cfg.Version,
		APIVersion:    APIVersion,
		MinAPIVersion: MinAPIVersion,
		Os:            "linux",
		Arch:          goArch(),
		KernelVersion: f.kernel,
		GoVersion:     runtime.Version(),
		Components: []system.ComponentVersion{{
			Name:    "Engine",
			Version: s.cfg.Version,
			Details: map[string]string{
				"ApiVersion":    APIVersion,
				"MinAPIVersion": MinAPIVersion,
				"Os":            "linux",
				"Arch":          goArch(),
				"KernelVersion": f.kernel,
				"GoVersion":     runtime.Version(),
				"Experimental":  "false",
			},
		}},
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) containerCounts(ctx context.Context) engine.Counts {
	if s.cfg.Containers == nil {
		return engine.Counts{}
	}
	return s.cfg.Containers.Counts(ctx)
}

func (s *Server) info(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	f := hostFacts()
	imgs, err := s.cfg.Images.List(ctx, images.ListOptions{All: true})
	if err != nil {
		s.writeError(w, r, fmt.Errorf("listing images: %w", err))
		return
	}
	c := s.containerCounts(ctx)
	info := system.Info{
		ID:                 s.cfg.ID,
		Containers:         c.Total,
		ContainersRunning:  c.Running,
		ContainersPaused:   c.Paused,
		ContainersStopped:  c.Stopped,
		Images:             len(imgs),
		Driver:             "overlay2",
		DriverStatus:       [][2]string{{"Backing Filesystem", "extfs"}, {"Supports d_type", "true"}, {"Using metacopy", "false"}, {"Native Overlay Diff", "true"}},
		MemoryLimit:        true,
		SwapLimit:          true,
		CPUCfsPeriod:       true,
		CPUCfsQuota:        true,
		CPUShares:          true,
		CPUSet:             true,
		PidsLimit:          true,
		IPv4Forwarding:     true,
		NGoroutines:        runtime.NumGoroutine(),
		SystemTime:         time.Now().Format(time.RFC3339Nano),
		LoggingDriver:      "json-file",
		CgroupDriver:       "cgroupfs",
		CgroupVersion:      f.cgroupVersion,
		NEventsListener:    s.events.Subscribers(),
		KernelVersion:      f.kernel,
		OperatingSystem:    "berth",
		OSVersion:          s.cfg.Version,
		OSType:             "linux",
		Architecture:       unameArch(),
		IndexServerAddress: "https://index.docker.io/v1/",
		RegistryConfig: &registry.ServiceConfig{
			InsecureRegistryCIDRs: nil,
			IndexConfigs:          map[string]*registry.IndexInfo{"docker.io": {Name: "docker.io", Official: true, Secure: true}},
		},
		NCPU:            runtime.NumCPU(),
		MemTotal:        f.memTotal,
		DockerRootDir:   s.cfg.RootDir,
		Name:            s.cfg.Name,
		ServerVersion:   s.cfg.Version,
		Runtimes:        map[string]system.RuntimeWithStatus{"runc": {Runtime: system.Runtime{Path: "runc"}}},
		DefaultRuntime:  "runc",
		Isolation:       "",
		SecurityOptions: []string{"name=seccomp,profile=builtin", "name=cgroupns"},
		CDISpecDirs:     []string{},
		Warnings:        []string{},
	}
	info.Swarm.LocalNodeState = "inactive"
	if s.cfg.Containers == nil {
		info.Warnings = append(info.Warnings, "WARNING: berth's container engine is not running: container commands are not available")
	}
	if f.cgroupVersion != "2" && f.v1 != nil {
		// Native mode on a v1/v2 hybrid host: limits work where the v1
		// controller is there; say which do not.
		l := f.v1
		info.MemoryLimit, info.SwapLimit = l.memory, l.swap
		info.CPUCfsPeriod, info.CPUCfsQuota, info.CPUShares = l.cfs, l.cfs, l.shares
		info.CPUSet, info.PidsLimit = l.cpuset, l.pids
		var missing []string
		for _, m := range []struct {
			ok   bool
			name string
		}{{l.memory, "memory"}, {l.swap, "swap"}, {l.cfs, "CPU quota"}, {l.shares, "CPU shares"}, {l.cpuset, "cpuset"}, {l.pids, "pids"}} {
			if !m.ok {
				missing = append(missing, m.name)
			}
		}
		if len(missing) > 0 {
			info.Warnings = append(info.Warnings, "WARNING: cgroup v1 host: berth cannot apply these limits: "+strings.Join(missing, ", "))
		}
	}
	if s.cfg.Info != nil {
		s.cfg.Info(&info)
	}
	writeJSON(w, http.StatusOK, info)
}

// unameArch is the architecture as uname -m spells it (docker info).
func unameArch() string {
	switch runtime.GOARCH {
	case "amd64":
		return "x86_64"
	case "arm64":
		return "aarch64"
	}
	return runtime.GOARCH
}

// legacyDiskUsage is GET /system/df before API 1.52 (and alongside the
// new fields in 1.52).
type legacyDiskUsage struct {
	LayersSize int64
	Images     []image.Summary
	Containers []container.Summary
	Volumes    []volume.Volume
	BuildCache []any
}

type diskUsageResponse struct {
	*legacyDiskUsage
	system.DiskUsage
}

func (s *Server) diskUsage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q, err := parseQuery(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	imgs, err := s.cfg.Images.List(ctx, images.ListOptions{All: true})
	if err != nil {
		s.writeError(w, r, fmt.Errorf("listing images: %w", err))
		return
	}
	var ctrs []container.Summary
	if s.cfg.Containers != nil {
		if ctrs, err = s.cfg.Containers.List(ctx, engine.ListOptions{All: true, Size: true}); err != nil {
			s.writeError(w, r, fmt.Errorf("listing containers: %w", err))
			return
		}
	}
	vols, err := s.volumeUsage(ctx)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var total, reclaim, active int64
	for i := range imgs {
		im := &imgs[i]
		im.Containers = 0
		if s.cfg.Containers != nil && s.cfg.Containers.ImageInUse(im.ID) {
			im.Containers = 1
			active++
		} else {
			reclaim += im.Size
		}
		// Layers shared by images count once per image: the store has
		// no per-layer usage API yet, so this is an upper bound.
		total += im.Size
		im.SharedSize = 0
	}
	if imgs == nil {
		imgs = []image.Summary{}
	}
	if ctrs == nil {
		ctrs = []container.Summary{}
	}
	cu := &container.DiskUsage{TotalCount: int64(len(ctrs))}
	for _, c := range ctrs {
		cu.TotalSize += c.SizeRw
		if c.State == container.StateRunning || c.State == container.StatePaused || c.State == container.StateRestarting {
			cu.ActiveCount++
		} else {
			cu.Reclaimable += c.SizeRw
		}
	}
	vu := &volume.DiskUsage{TotalCount: int64(len(vols))}
	for _, v := range vols {
		if v.UsageData == nil {
			continue
		}
		if v.UsageData.Size > 0 {
			vu.TotalSize += v.UsageData.Size
		}
		if v.UsageData.RefCount > 0 {
			vu.ActiveCount++
		} else if v.UsageData.Size > 0 {
			vu.Reclaimable += v.UsageData.Size
		}
	}
	var resp diskUsageResponse
	types := q.all("type")
	want := func(t system.DiskUsageObject) bool {
		if len(types) == 0 {
			return true
		}
		for _, x := range types {
			if x == string(t) {
				return true
			}
		}
		return false
	}
	if before(r, "1.53") {
		resp.legacyDiskUsage = &legacyDiskUsage{Volumes: []volume.Volume{}, BuildCache: []any{}}
		if want(system.ImageObject) {
			resp.LayersSize = total
			resp.Images = imgs
		}
		if want(system.ContainerObject) {
			resp.Containers = ctrs
		}
		if want(system.VolumeObject) {
			resp.Volumes = vols
		}
	}
	if !before(r, "1.52") {
		if want(system.ImageObject) {
			resp.ImageUsage = &image.DiskUsage{ActiveCount: active, TotalCount: int64(len(imgs)), TotalSize: total, Reclaimable: reclaim}
			if q.bool("verbose") {
				resp.ImageUsage.Items = imgs
			}
		}
		if want(system.ContainerObject) {
			resp.ContainerUsage = cu
			if q.bool("verbose") {
				resp.ContainerUsage.Items = ctrs
			}
		}
		if want(system.VolumeObject) {
			resp.VolumeUsage = vu
			if q.bool("verbose") {
				resp.VolumeUsage.Items = vols
			}
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

// volumeUsage lists volumes with UsageData for df: the store's own
// figures when it has them, else unknown (-1) sizes, which the CLI shows
// as N/A.
func (s *Server) volumeUsage(ctx context.Context) ([]volume.Volume, error) {
	if s.cfg.Volumes == nil {
		return []volume.Volume{}, nil
	}
	var vols []volume.Volume
	var err error
	if u, ok := s.cfg.Volumes.(volumeUsager); ok {
		vols, err = u.Usage(ctx)
	} else {
		vols, err = s.cfg.Volumes.List(ctx, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("listing volumes: %w", err)
	}
	for i := range vols {
		if vols[i].UsageData == nil {
			vols[i].UsageData = &volume.UsageData{Size: -1, RefCount: -1}
		}
	}
	if vols == nil {
		vols = []volume.Volume{}
	}
	return vols, nil
}

// auth checks credentials against the registry (`docker login`).
func (s *Server) auth(w http.ResponseWriter, r *http.Request) {
	var cfg registry.AuthConfig
	if err := decodeJSON(r.Body, &cfg, false); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.login(r.Context(), cfg); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, registry.AuthResponse{Status: "Login Succeeded"})
}

// registryHost turns a ServerAddress ("https://index.docker.io/v1/",
// "localhost:5000", "http://r:5000/path") into host[:port].
func registryHost(addr string) string {
	addr = strings.TrimSpace(addr)
	if i := strings.Index(addr, "://"); i >= 0 {
		addr = addr[i+3:]
	}
	addr, _, _ = strings.Cut(addr, "/")
	switch addr {
	case "", "index.docker.io", "docker.io", "registry-1.docker.io":
		return "index.docker.io"
	}
	return addr
}

func (s *Server) insecure(host string) bool {
	h := host
	if i := strings.LastIndex(h, ":"); i >= 0 && !strings.HasSuffix(h, "]") {
		h = h[:i]
	}
	h = strings.Trim(h, "[]")
	if h == "localhost" || h == "::1" || strings.HasPrefix(h, "127.") {
		return true
	}
	for _, x := range s.cfg.InsecureRegistries {
		if x == host {
			return true
		}
	}
	return false
}

func (s *Server) login(ctx context.Context, cfg registry.AuthConfig) error {
	host := registryHost(cfg.ServerAddress)
	var opts []name.Option
	if s.insecure(host) {
		opts = append(opts, name.Insecure)
	}
	reg, err := name.NewRegistry(host, opts...)
	if err != nil {
		return invalidf("invalid registry address %q: %v", cfg.ServerAddress, err)
	}
	base := s.cfg.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// NewWithContext pings the registry and, for token auth, fetches a
	// token with the credentials: bad ones fail here.
	tr, err := transport.NewWithContext(ctx, reg, images.Authenticator(cfg), base, nil)
	if err != nil {
		return loginError(host, err)
	}
	// Basic auth is only sent with requests: check it on /v2/.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, reg.Scheme()+"://"+reg.RegistryStr()+"/v2/", nil)
	if err != nil {
		return fmt.Errorf("logging in to %s: %w", host, err)
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return loginError(host, err)
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return nil
	case http.StatusUnauthorized, http.StatusForbidden:
		return engine.WithKind(engine.ErrUnauthorized, fmt.Sprintf("login attempt to %s://%s/v2/ failed with status: %d %s", reg.Scheme(), reg.RegistryStr(), resp.StatusCode, http.StatusText(resp.StatusCode)))
	}
	return fmt.Errorf("logging in to %s: registry answered %s", host, resp.Status)
}

func loginError(host string, err error) error {
	var terr *transport.Error
	if errors.As(err, &terr) && (terr.StatusCode == http.StatusUnauthorized || terr.StatusCode == http.StatusForbidden) {
		return engine.WithKind(engine.ErrUnauthorized, fmt.Sprintf("logging in to %s: %v", host, err))
	}
	return fmt.Errorf("logging in to %s: %w", host, err)
}
