package addrlimit

import (
	"net"
	"net/netip"
)

// Key returns the key a remote address ("host:port" or a bare IP) is
// limited under: the IP for IPv4 and IPv4-mapped IPv6, the /64 prefix for
// IPv6 (one host or home usually owns a whole /64, so counting single IPv6
// addresses would let it multiply its limits at will). Anything that is not
// an IP address, such as an in-process pipe's "pipe", is its own key.
func Key(remote string) string {
	var a netip.Addr
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		a = ap.Addr()
	} else if a, err = netip.ParseAddr(remote); err != nil {
		return remote
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// KeyOf is Key of a connection's remote address.
func KeyOf(a net.Addr) string {
	if a == nil {
		return ""
	}
	return Key(a.String())
}
