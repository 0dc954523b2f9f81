package daemon

import (
	"strconv"
	"strings"
)

// linuxSignals are the Linux signal numbers by name (containers run on
// Linux whatever the host of the API client is). The numbers are those of
// x86 and arm64, the guest's architectures.
var linuxSignals = map[string]int{
	"ABRT": 6, "ALRM": 14, "BUS": 7, "CHLD": 17, "CLD": 17, "CONT": 18, "FPE": 8,
	"HUP": 1, "ILL": 4, "INT": 2, "IO": 29, "IOT": 6, "KILL": 9, "PIPE": 13,
	"POLL": 29, "PROF": 27, "PWR": 30, "QUIT": 3, "SEGV": 11, "STKFLT": 16,
	"STOP": 19, "SYS": 31, "TERM": 15, "TRAP": 5, "TSTP": 20, "TTIN": 21,
	"TTOU": 22, "URG": 23, "USR1": 10, "USR2": 12, "VTALRM": 26, "WINCH": 28,
	"XCPU": 24, "XFSZ": 25,
}

const (
	sigKILL = 9
	sigTERM = 15
	// The real-time signals, as glibc numbers them.
	sigRTMIN = 34
	sigRTMAX = 64
)

// parseSignal reads a signal as the docker CLI gives it: "KILL",
// "SIGKILL", "sigkill", "9", or "RTMIN+3". "" is an error.
func parseSignal(s string) (int, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 || n > sigRTMAX {
			return 0, invalidf("Invalid signal: %s", s)
		}
		return n, nil
	}
	name := strings.TrimPrefix(strings.ToUpper(s), "SIG")
	if n, ok := linuxSignals[name]; ok {
		return n, nil
	}
	for _, rt := range []struct {
		prefix string
		base   int
		sign   int
	}{{"RTMIN+", sigRTMIN, 1}, {"RTMAX-", sigRTMAX, -1}} {
		if rest, ok := strings.CutPrefix(name, rt.prefix); ok {
			if k, err := strconv.Atoi(rest); err == nil && k >= 0 {
				if n := rt.base + rt.sign*k; n >= sigRTMIN && n <= sigRTMAX {
					return n, nil
				}
			}
		}
	}
	switch name {
	case "RTMIN":
		return sigRTMIN, nil
	case "RTMAX":
		return sigRTMAX, nil
	}
	return 0, invalidf("Invalid signal: %s", s)
}
