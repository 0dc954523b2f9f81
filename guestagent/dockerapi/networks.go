package dockerapi

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/netip"
	"strings"

	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"

	"github.com/berthvm/berth/guestagent/engine"
)

// berth serves only dockerd's three predefined networks, read-only: they
// are what `docker network ls/inspect`, `docker run --network
// host|none|bridge` and the prune commands need. User-defined networks
// answer 501 until the engine has them.

// predefinedNetwork is one of bridge, host and none.
type predefinedNetwork struct {
	network.Network
}

const userNetworksUnsupported = "user-defined networks are not supported by berth yet: use the default bridge, host or none"

func (s *Server) predefinedNetworks() []predefinedNetwork {
	seed := s.cfg.ID
	if seed == "" {
		// No daemon ID: IDs are stable for this server's life only.
		var b [16]byte
		_, _ = rand.Read(b[:])
		seed = hex.EncodeToString(b[:])
	}
	id := func(name string) string {
		sum := sha256.Sum256([]byte("berth network\x00" + seed + "\x00" + name))
		return hex.EncodeToString(sum[:])
	}
	subnet, err := netip.ParsePrefix(s.cfg.BridgeSubnet)
	if err != nil {
		subnet = netip.MustParsePrefix("172.17.0.0/16")
	}
	subnet = subnet.Masked()
	iface := s.cfg.BridgeInterface
	if iface == "" {
		iface = "berth0"
	}
	mk := func(name, driver string, ipam []network.IPAMConfig, opts map[string]string) predefinedNetwork {
		if opts == nil {
			opts = map[string]string{}
		}
		if ipam == nil {
			ipam = []network.IPAMConfig{}
		}
		return predefinedNetwork{network.Network{
			Name:       name,
			ID:         id(name),
			Created:    s.start.UTC(),
			Scope:      "local",
			Driver:     driver,
			EnableIPv4: driver == "bridge",
			IPAM:       network.IPAM{Driver: "default", Options: map[string]string{}, Config: ipam},
			Options:    opts,
			Labels:     map[string]string{},
		}}
	}
	return []predefinedNetwork{
		mk("bridge", "bridge", []network.IPAMConfig{{Subnet: subnet, Gateway: subnet.Addr().Next()}}, map[string]string{
			"com.docker.network.bridge.default_bridge":       "true",
			"com.docker.network.bridge.enable_icc":           "true",
			"com.docker.network.bridge.enable_ip_masquerade": "true",
			"com.docker.network.bridge.host_binding_ipv4":    "0.0.0.0",
			"com.docker.network.bridge.name":                 iface,
			"com.docker.network.driver.mtu":                  "1500",
		}),
		mk("host", "host", nil, nil),
		mk("none", "null", nil, nil),
	}
}

func (s *Server) networkRoutes(m *http.ServeMux) {
	m.HandleFunc("GET /networks", s.networkList)
	m.HandleFunc("GET /networks/{id}", s.networkInspect)
	m.HandleFunc("POST /networks/prune", s.networkPrune)
	m.HandleFunc("POST /networks/create", s.networkUnsupported)
	m.HandleFunc("POST /networks/{id}/connect", s.networkUnsupported)
	m.HandleFunc("POST /networks/{id}/disconnect", s.networkUnsupported)
	m.HandleFunc("DELETE /networks/{id}", s.networkRemove)
}

// findNetwork resolves a name, an ID or a unique ID prefix.
func (s *Server) findNetwork(ref string) (predefinedNetwork, error) {
	for _, n := range s.networks {
		if n.Name == ref || n.ID == ref {
			return n, nil
		}
	}
	var found []predefinedNetwork
	for _, n := range s.networks {
		if ref != "" && strings.HasPrefix(n.ID, ref) {
			found = append(found, n)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return predefinedNetwork{}, notFoundf("network %s not found", ref)
	}
	return predefinedNetwork{}, invalidf("network %s is ambiguous (%d matches found based on ID prefix)", ref, len(found))
}

// matchNetwork applies GET /networks filters.
func matchNetwork(n predefinedNetwork, f map[string][]string) bool {
	anyOf := func(key string, match func(v string) bool) bool {
		vs, ok := f[key]
		if !ok {
			return true
		}
		for _, v := range vs {
			if match(v) {
				return true
			}
		}
		return false
	}
	return anyOf("name", func(v string) bool { return strings.Contains(n.Name, v) }) &&
		anyOf("id", func(v string) bool { return strings.HasPrefix(n.ID, v) }) &&
		anyOf("driver", func(v string) bool { return n.Driver == v }) &&
		anyOf("scope", func(v string) bool { return v == n.Scope }) &&
		anyOf("type", func(v string) bool { return v == "builtin" }) &&
		anyOf("label", func(string) bool { return false }) &&
		// Predefined networks are never dangling.
		anyOf("dangling", func(v string) bool { return v == "false" || v == "0" })
}

func (s *Server) networkList(w http.ResponseWriter, r *http.Request) {
	q, err := parseQuery(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	f, err := q.filters()
	if err == nil {
		err = checkFilters(f, "dangling", "driver", "id", "label", "name", "scope", "type")
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	for _, t := range f["type"] {
		if t != "builtin" && t != "custom" {
			s.writeError(w, r, invalidf("invalid filter: 'type'='%s'", t))
			return
		}
	}
	list := []network.Inspect{}
	for _, n := range s.networks {
		if matchNetwork(n, f) {
			list = append(list, network.Inspect{Network: n.Network, Containers: map[string]network.EndpointResource{}})
		}
	}
	writeJSON(w, http.StatusOK, list)
}

// networkInspect serves GET /networks/{id}, with the running containers
// attached to it.
func (s *Server) networkInspect(w http.ResponseWriter, r *http.Request) {
	n, err := s.findNetwork(r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := network.Inspect{Network: n.Network, Containers: map[string]network.EndpointResource{}}
	if c := s.cfg.Containers; c != nil {
		list, err := c.List(r.Context(), engine.ListOptions{})
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		for _, ctr := range list {
			if ep, ok := endpointOn(ctr, n.Name); ok {
				out.Containers[ctr.ID] = ep
			}
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// endpointOn is a running container's endpoint on the network name.
func endpointOn(c container.Summary, name string) (network.EndpointResource, bool) {
	if c.NetworkSettings == nil {
		return network.EndpointResource{}, false
	}
	ep, ok := c.NetworkSettings.Networks[name]
	if !ok || ep == nil {
		return network.EndpointResource{}, false
	}
	res := network.EndpointResource{EndpointID: ep.EndpointID, MacAddress: ep.MacAddress}
	if len(c.Names) > 0 {
		res.Name = strings.TrimPrefix(c.Names[0], "/")
	}
	if ep.IPAddress.IsValid() {
		res.IPv4Address = netip.PrefixFrom(ep.IPAddress, ep.IPPrefixLen)
	}
	if ep.GlobalIPv6Address.IsValid() {
		res.IPv6Address = netip.PrefixFrom(ep.GlobalIPv6Address, ep.GlobalIPv6PrefixLen)
	}
	return res, true
}

// networkPrune has nothing to prune: predefined networks stay.
func (s *Server) networkPrune(w http.ResponseWriter, r *http.Request) {
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
	writeJSON(w, http.StatusOK, network.PruneReport{NetworksDeleted: []string{}})
}

func (s *Server) networkUnsupported(w http.ResponseWriter, r *http.Request) {
	s.writeError(w, r, notImplementedf("%s", userNetworksUnsupported))
}

// networkRemove refuses the predefined networks (403, as dockerd) and
// knows no other: nothing else exists to remove.
func (s *Server) networkRemove(w http.ResponseWriter, r *http.Request) {
	n, err := s.findNetwork(r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeError(w, r, forbiddenf("%s is a pre-defined network and cannot be removed", n.Name))
}

// buildPrune answers `docker builder prune` and `docker system prune`:
// berth has no build cache yet.
func (s *Server) buildPrune(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, build.CachePruneReport{CachesDeleted: []string{}})
}

// pluginList and pluginInspect: berth has no plugins, and saying so
// (rather than 501) lets `docker inspect NAME` try the next object type.
func (s *Server) pluginList(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, []any{})
}

func (s *Server) pluginInspect(w http.ResponseWriter, r *http.Request) {
	name, ok := strings.CutSuffix(r.PathValue("rest"), "/json")
	if !ok {
		s.writeError(w, r, notImplementedf("plugins are not supported by berth"))
		return
	}
	s.writeError(w, r, notFoundf("plugin %q not found", name))
}
