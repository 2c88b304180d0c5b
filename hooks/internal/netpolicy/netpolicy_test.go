package netpolicy

import (
	"net/netip"
	"testing"
)

func TestPublic(t *testing.T) {
	refused := []string{
		"127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0", "0.1.2.3",
		"192.0.0.8", "198.18.0.1", "240.0.0.1", "255.255.255.255", "224.0.0.1", "192.0.2.1",
		"::", "::1", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1", "fec0::1", "2001:db8::1",
		"::ffff:127.0.0.1", "::ffff:10.0.0.1", // IPv4-mapped
		"64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "64:ff9b::a00:1", // NAT64 of loopback, metadata, 10/8
		"64:ff9b:1::808:808",                 // local-use NAT64, whatever it embeds
		"::7f00:1", "::a9fe:a9fe", "::a00:1", // IPv4-compatible
		"2002:7f00:1::1", "2002:a9fe:a9fe::1", "2002:c0a8:101::1", // 6to4 of loopback, metadata, 192.168/16
		"2001:0:4136:e378:8000:63bf:80ff:fffe", // Teredo whose client is 127.0.0.1 (inverted bits)
		"2001:0:a00:1:8000:63bf:3fff:fdd2",     // Teredo whose server is 10.0.0.1
	}
	for _, s := range refused {
		if Public(netip.MustParseAddr(s)) {
			t.Errorf("%s: public, want refused", s)
		}
	}
	allowed := []string{
		"93.184.216.34", "8.8.8.8", "1.1.1.1", "2606:2800:220:1:248:1893:25c8:1946", "2a00:1450:4001:82b::200e",
		"::ffff:93.184.216.34", "64:ff9b::808:808", "2002:808:808::1", // a public IPv4 behind each scheme
		"2001:0:4136:e378:8000:63bf:f7f7:f7f7", // Teredo: server 65.54.227.120, client 8.8.8.8
	}
	for _, s := range allowed {
		if !Public(netip.MustParseAddr(s)) {
			t.Errorf("%s: refused, want public", s)
		}
	}
}
