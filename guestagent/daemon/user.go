package daemon

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
)

// execUser is who a container's process runs as.
type execUser struct {
	UID, GID uint32
	Groups   []uint32 // supplementary
	Home     string
}

type passwdEntry struct {
	name     string
	uid, gid uint32
	home     string
}

type groupEntry struct {
	name    string
	gid     uint32
	members []string
}

func parsePasswd(b []byte) []passwdEntry {
	var out []passwdEntry
	for _, f := range colonRecords(b, 4) {
		uid, ok1 := parseID(f[2])
		gid, ok2 := parseID(f[3])
		if !ok1 || !ok2 {
			continue
		}
		e := passwdEntry{name: f[0], uid: uid, gid: gid}
		if len(f) > 5 {
			e.home = f[5]
		}
		out = append(out, e)
	}
	return out
}

func parseGroup(b []byte) []groupEntry {
	var out []groupEntry
	for _, f := range colonRecords(b, 3) {
		gid, ok := parseID(f[2])
		if !ok {
			continue
		}
		e := groupEntry{name: f[0], gid: gid}
		if len(f) > 3 && f[3] != "" {
			e.members = strings.Split(f[3], ",")
		}
		out = append(out, e)
	}
	return out
}

// colonRecords splits an /etc/passwd-style file into the fields of its
// records, skipping blank lines, comments and records of fewer than min
// fields.
func colonRecords(b []byte, min int) [][]string {
	var out [][]string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if f := strings.Split(line, ":"); len(f) >= min {
			out = append(out, f)
		}
	}
	return out
}

func parseID(s string) (uint32, bool) {
	n, err := strconv.ParseUint(s, 10, 32)
	return uint32(n), err == nil
}

// resolveUser turns Config.User ("", "name", "uid", "name:group",
// "uid:gid") and HostConfig.GroupAdd into ids with the container's
// /etc/passwd and /etc/group, read through readFile, as runc and dockerd
// do: a numeric user missing from passwd runs with gid 0; a named one
// must exist. Without an explicit group the user's supplementary groups
// come from /etc/group.
func resolveUser(user string, groupAdd []string, readFile func(string) ([]byte, error)) (execUser, error) {
	read := func(p string) ([]byte, error) {
		b, err := readFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return b, err
	}
	pwb, err := read("/etc/passwd")
	if err != nil {
		return execUser{}, fmt.Errorf("reading /etc/passwd: %w", err)
	}
	grb, err := read("/etc/group")
	if err != nil {
		return execUser{}, fmt.Errorf("reading /etc/group: %w", err)
	}
	users, groups := parsePasswd(pwb), parseGroup(grb)

	userArg, groupArg, hasGroup := strings.Cut(user, ":")
	if userArg == "" {
		userArg = "0"
	}
	u := execUser{Home: "/"}
	var name string
	if uid, ok := parseID(userArg); ok {
		u.UID = uid
		for _, e := range users {
			if e.uid == uid {
				u.GID, u.Home, name = e.gid, e.home, e.name
				break
			}
		}
	} else {
		found := false
		for _, e := range users {
			if e.name == userArg {
				u.UID, u.GID, u.Home, name = e.uid, e.gid, e.home, e.name
				found = true
				break
			}
		}
		if !found {
			return execUser{}, fmt.Errorf("unable to find user %s: no matching entries in passwd file", userArg)
		}
	}
	if u.Home == "" {
		u.Home = "/"
	}
	findGroup := func(g string) (uint32, error) {
		if gid, ok := parseID(g); ok {
			return gid, nil
		}
		for _, e := range groups {
			if e.name == g {
				return e.gid, nil
			}
		}
		return 0, fmt.Errorf("unable to find group %s: no matching entries in group file", g)
	}
	if hasGroup && groupArg != "" {
		gid, err := findGroup(groupArg)
		if err != nil {
			return execUser{}, err
		}
		u.GID = gid
	} else if name != "" {
		for _, e := range groups {
			for _, m := range e.members {
				if m == name && e.gid != u.GID {
					u.Groups = append(u.Groups, e.gid)
				}
			}
		}
	}
	for _, g := range groupAdd {
		gid, err := findGroup(g)
		if err != nil {
			return execUser{}, err
		}
		u.Groups = append(u.Groups, gid)
	}
	return u, nil
}
