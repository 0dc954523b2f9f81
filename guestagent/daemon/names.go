package daemon

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math/big"
	"regexp"
	"strconv"
	"strings"

	"github.com/berthvm/berth/guestagent/engine"
)

// validName is what dockerd accepts as a container name.
var validName = regexp.MustCompile(`^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

// normalizeName checks a user-given name and returns it with its "/".
func normalizeName(name string) (string, error) {
	if !validName.MatchString(name) {
		return "", engine.WithKind(engine.ErrInvalid, fmt.Sprintf("Invalid container name (%s), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", name))
	}
	return "/" + strings.TrimPrefix(name, "/"), nil
}

// newID returns a random 64-hex container or exec ID. Like dockerd it
// avoids IDs whose 12-character short form is all digits, which a user
// could not tell from a number.
func newID() string {
	var b [32]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			panic(fmt.Sprintf("reading random bytes: %v", err))
		}
		id := hex.EncodeToString(b[:])
		if _, err := strconv.ParseUint(id[:12], 10, 64); err != nil {
			return id
		}
	}
}

// Words for random names: berth is a harbour word.
var (
	nameAdjectives = []string{
		"amber", "ancient", "brave", "breezy", "bright", "calm", "clever", "cosy",
		"curious", "daring", "deep", "eager", "early", "fair", "fancy", "fearless",
		"gentle", "gleaming", "golden", "happy", "hardy", "hidden", "humble", "jolly",
		"keen", "kind", "lively", "lucky", "mellow", "merry", "misty", "modest",
		"nimble", "noble", "patient", "placid", "proud", "quick", "quiet", "rapid",
		"rosy", "rustic", "salty", "serene", "sharp", "shiny", "silent", "silver",
		"sleepy", "smooth", "snug", "steady", "stoic", "sturdy", "sunny", "swift",
		"tidal", "tranquil", "trusty", "vivid", "wandering", "warm", "wise", "zesty",
	}
	nameNouns = []string{
		"albatross", "anchor", "bay", "beacon", "buoy", "cabin", "capstan", "cargo",
		"channel", "coast", "compass", "cormorant", "cove", "current", "dinghy", "dock",
		"dolphin", "estuary", "ferry", "fjord", "galley", "gull", "harbor", "heron",
		"hull", "inlet", "island", "jetty", "keel", "kelp", "lagoon", "lantern",
		"lighthouse", "mast", "mooring", "narwhal", "oar", "otter", "pelican", "pier",
		"puffin", "quay", "reef", "rudder", "sail", "schooner", "seal", "shoal",
		"skiff", "sloop", "sound", "starfish", "stern", "tern", "tide", "tugboat",
		"walrus", "wave", "whale", "wharf", "windlass", "yacht", "yawl", "zephyr",
	}
)

func randIndex(n int) int {
	v, err := rand.Int(rand.Reader, big.NewInt(int64(n)))
	if err != nil {
		panic(fmt.Sprintf("reading random bytes: %v", err))
	}
	return int(v.Int64())
}

// randomName returns "/adjective_noun", with a digit appended after the
// first retry as dockerd does; taken says whether a name is in use.
func randomName(taken func(string) bool) string {
	for i := 0; ; i++ {
		n := "/" + nameAdjectives[randIndex(len(nameAdjectives))] + "_" + nameNouns[randIndex(len(nameNouns))]
		if i > 0 {
			n += strconv.Itoa(randIndex(10))
		}
		if !taken(n) {
			return n
		}
	}
}

// isHexPrefix reports whether s could be (a prefix of) an ID.
func isHexPrefix(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
