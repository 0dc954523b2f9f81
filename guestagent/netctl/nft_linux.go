package netctl

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// TableName is the nftables table (family ip) that netctl owns entirely.
const TableName = "berth"

// Chain names in the table.
const (
	chainPrerouting  = "prerouting"
	chainOutput      = "output"
	chainPostrouting = "postrouting"
	chainForward     = "forward"
	chainPublish     = "publish"
)

// ipsDstNAT is IPS_DST_NAT from linux/netfilter/nf_conntrack_common.h.
const ipsDstNAT = 1 << 5

// ruleset is everything the table holds; it is a pure function of the
// configuration and the published ports, so it can be rewritten whole.
type ruleset struct {
	bridge string
	uplink string
	subnet netip.Prefix
	ports  []PublishedPort
}

// apply replaces the table with rs in one transaction: "add; delete; add"
// works whether or not the table exists, and the kernel applies the batch
// atomically, so packets never see a half-written table.
func (rs ruleset) apply(netnsFd int) error {
	c, err := nftables.New(nftables.WithNetNSFd(netnsFd))
	if err != nil {
		return fmt.Errorf("opening nftables: %w", err)
	}
	t := &nftables.Table{Name: TableName, Family: nftables.TableFamilyIPv4}
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)

	accept := nftables.ChainPolicyAccept
	pre := c.AddChain(&nftables.Chain{Name: chainPrerouting, Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest})
	out := c.AddChain(&nftables.Chain{Name: chainOutput, Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest})
	post := c.AddChain(&nftables.Chain{Name: chainPostrouting, Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	fwd := c.AddChain(&nftables.Chain{Name: chainForward, Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	pub := c.AddChain(&nftables.Chain{Name: chainPublish, Table: t})

	add := func(ch *nftables.Chain, ex ...expr.Any) {
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: ex})
	}
	// Traffic to any of the guest's own addresses may be a published port.
	for _, ch := range []*nftables.Chain{pre, out} {
		add(ch, append(fibDaddrLocal(), jump(chainPublish))...)
	}
	for _, p := range rs.ports {
		add(pub, dnat(p)...)
	}

	// Containers reach the outside through the guest's address.
	masq := ipSaddr(rs.subnet)
	if rs.uplink != "" {
		masq = append(masq, ifname(expr.MetaKeyOIFNAME, expr.CmpOpEq, rs.uplink)...)
	} else {
		masq = append(masq, ifname(expr.MetaKeyOIFNAME, expr.CmpOpNeq, rs.bridge)...)
	}
	add(post, append(masq, &expr.Masq{})...)
	// 127.0.0.1:PORT inside the guest: after DNAT the source is still
	// loopback, which the container cannot answer; route_localnet lets the
	// packet out and this gives it the bridge address as source.
	lo := netip.MustParsePrefix("127.0.0.0/8")
	add(post, concat(ifname(expr.MetaKeyOIFNAME, expr.CmpOpEq, rs.bridge), ipSaddr(lo), []expr.Any{&expr.Masq{}})...)
	// Hairpin: a container reaching a published port that lands on the
	// same bridge must see replies come back through the NAT.
	add(post, concat(ifname(expr.MetaKeyOIFNAME, expr.CmpOpEq, rs.bridge), ctStatusDNAT(), ipSaddr(rs.subnet), []expr.Any{&expr.Masq{}})...)

	// Forwarding: containers may go out and talk to each other; from
	// outside only replies and published ports get in.
	add(fwd, append(ifname(expr.MetaKeyIIFNAME, expr.CmpOpEq, rs.bridge), verdict(expr.VerdictAccept))...)
	add(fwd, concat(ifname(expr.MetaKeyOIFNAME, expr.CmpOpEq, rs.bridge), ctStateEstablished(), []expr.Any{verdict(expr.VerdictAccept)})...)
	add(fwd, concat(ifname(expr.MetaKeyOIFNAME, expr.CmpOpEq, rs.bridge), ctStatusDNAT(), []expr.Any{verdict(expr.VerdictAccept)})...)
	add(fwd, append(ifname(expr.MetaKeyOIFNAME, expr.CmpOpEq, rs.bridge), verdict(expr.VerdictDrop))...)

	if err := c.Flush(); err != nil {
		return fmt.Errorf("writing nftables table %s: %w", TableName, err)
	}
	return nil
}

// deleteTable removes the table, if present.
func deleteTable(netnsFd int) error {
	c, err := nftables.New(nftables.WithNetNSFd(netnsFd))
	if err != nil {
		return fmt.Errorf("opening nftables: %w", err)
	}
	t := &nftables.Table{Name: TableName, Family: nftables.TableFamilyIPv4}
	c.AddTable(t)
	c.DelTable(t)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("deleting nftables table %s: %w", TableName, err)
	}
	return nil
}

func concat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func verdict(k expr.VerdictKind) expr.Any { return &expr.Verdict{Kind: k} }

func jump(chain string) expr.Any { return &expr.Verdict{Kind: expr.VerdictJump, Chain: chain} }

// ifname matches iifname/oifname; the kernel compares IFNAMSIZ bytes.
func ifname(key expr.MetaKey, op expr.CmpOp, name string) []expr.Any {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: op, Register: 1, Data: b},
	}
}

func ipAddrMatch(offset uint32, p netip.Prefix) []expr.Any {
	p = p.Masked()
	a := p.Addr().As4()
	ex := []expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4}}
	if p.Bits() < 32 {
		mask := binary.BigEndian.AppendUint32(nil, ^uint32(0)<<(32-p.Bits()))
		ex = append(ex, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)})
	}
	return append(ex, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a[:]})
}

func ipSaddr(p netip.Prefix) []expr.Any { return ipAddrMatch(12, p) }
func ipDaddr(p netip.Prefix) []expr.Any { return ipAddrMatch(16, p) }

func fibDaddrLocal() []expr.Any {
	return []expr.Any{
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
	}
}

func ctBits(key expr.CtKey, bits uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: key},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(bits), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

func ctStatusDNAT() []expr.Any { return ctBits(expr.CtKeySTATUS, ipsDstNAT) }

func ctStateEstablished() []expr.Any {
	return ctBits(expr.CtKeySTATE, expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED)
}

func protoNum(proto string) byte {
	if proto == "udp" {
		return unix.IPPROTO_UDP
	}
	return unix.IPPROTO_TCP
}

// dnat is "[ip daddr H] meta l4proto P th dport HP dnat to CIP:CP".
func dnat(p PublishedPort) []expr.Any {
	var ex []expr.Any
	if p.HostIP != anyIP {
		ex = ipDaddr(netip.PrefixFrom(netip.MustParseAddr(p.HostIP), 32))
	}
	cip := p.ContainerIP.As4()
	return append(ex,
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{protoNum(p.Proto)}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(p.HostPort)},
		&expr.Immediate{Register: 1, Data: cip[:]},
		&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(p.ContainerPort)},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
	)
}
