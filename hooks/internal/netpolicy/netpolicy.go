// Package netpolicy decides which network addresses the server may connect to on someone
// else's behalf (affiliates' webhooks): only public unicast ones. IPv6 forms that carry an IPv4
// address (IPv4-mapped, IPv4-compatible, NAT64, 6to4, Teredo) are judged by that IPv4 address
// too, so an address like 64:ff9b::a9fe:a9fe cannot reach 169.254.169.254 through a NAT64
// gateway.
package netpolicy

import "net/netip"

// nonPublic are ranges that are unicast by the standard library's reckoning but not reachable
// on the public internet (or not meant to be): RFC 6890's special-purpose registry, the parts
// IsPrivate, IsLoopback and IsLinkLocalUnicast do not cover.
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // documentation
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, and the broadcast address
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local-use NAT64 (RFC 8215): a private gateway
	netip.MustParsePrefix("100::/64"),        // discard-only
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("fec0::/10"),       // deprecated site-local
}

var (
	nat64      = netip.MustParsePrefix("64:ff9b::/96") // well-known NAT64 prefix (RFC 6052)
	compatible = netip.MustParsePrefix("::/96")        // deprecated IPv4-compatible IPv6
	sixToFour  = netip.MustParsePrefix("2002::/16")    // 6to4 (RFC 3056)
	teredo     = netip.MustParsePrefix("2001::/32")    // Teredo (RFC 4380)
)

// Public reports whether ip is a public unicast address, and so is every IPv4 address it
// embeds.
func Public(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !publicAlone(ip) {
		return false
	}
	for _, v4 := range embeddedIPv4(ip) {
		if !publicAlone(v4) {
			return false
		}
	}
	return true
}

// publicAlone judges one address by its own ranges.
func publicAlone(ip netip.Addr) bool {
	if !ip.IsValid() || !ip.IsGlobalUnicast() || ip.IsPrivate() || ip.IsLoopback() || ip.IsLinkLocalUnicast() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// embeddedIPv4 are the IPv4 addresses an IPv6 address carries by a translation or tunnelling
// scheme, where a gateway on the way may deliver to them.
func embeddedIPv4(ip netip.Addr) []netip.Addr {
	if !ip.Is6() {
		return nil
	}
	b := ip.As16()
	v4 := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{b[i], b[i+1], b[i+2], b[i+3]}) }
	switch {
	case nat64.Contains(ip), compatible.Contains(ip):
		return []netip.Addr{v4(12)}
	case sixToFour.Contains(ip):
		return []netip.Addr{v4(2)}
	case teredo.Contains(ip):
		// The server's address in clear, the client's (the one reached) with its bits inverted.
		client := [4]byte{^b[12], ^b[13], ^b[14], ^b[15]}
		return []netip.Addr{v4(4), netip.AddrFrom4(client)}
	}
	return nil
}
