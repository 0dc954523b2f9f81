package modules

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// sigMagic ends a signed module; struct module_signature (12 bytes, the
// signature's length big-endian in its last 4) sits before it, and the
// PKCS#7 signature before that.
const sigMagic = "~Module signature appended~\n"

// StripSignature returns a module without its appended signature, and
// whether it had one. The kernel checks a signature by hashing the whole
// module and verifying an RSA signature, which is a good part of a
// module's load time under emulation (TCG). Debian's kernel does not
// enforce signatures unless it is booted with UEFI Secure Boot (lockdown)
// or module.sig_enforce=1, neither of which berth's guests are; an
// unsigned module then only taints the kernel ("E"), once.
func StripSignature(mod []byte) ([]byte, bool, error) {
	if !bytes.HasSuffix(mod, []byte(sigMagic)) {
		return mod, false, nil
	}
	end := len(mod) - len(sigMagic)
	const infoLen = 12
	if end < infoLen {
		return nil, false, fmt.Errorf("module signature: %d bytes is too short", len(mod))
	}
	sigLen := int(binary.BigEndian.Uint32(mod[end-4 : end]))
	start := end - infoLen - sigLen
	if sigLen <= 0 || start < 0 {
		return nil, false, fmt.Errorf("module signature: bad length %d in a %d-byte module", sigLen, len(mod))
	}
	return mod[:start], true, nil
}
