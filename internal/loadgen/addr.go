package loadgen

import (
	"fmt"
	"net"
	"net/netip"
)

// MaxSourceAddrs is how many loopback source addresses connections may be
// spread over: 127.0.0.1 to 127.0.0.16, which Linux routes on lo without
// configuration.
const MaxSourceAddrs = 16

// SourceAddrs returns the first n loopback addresses from 127.0.0.1. Each
// gives the ephemeral port range again (about 28,000 ports by default), so
// 20,000 streams plus the enrollments' TIME_WAIT sockets need several.
func SourceAddrs(n int) ([]netip.Addr, error) {
	if n < 1 || n > MaxSourceAddrs {
		return nil, fmt.Errorf("%d source addresses: want 1 to %d", n, MaxSourceAddrs)
	}
	out := make([]netip.Addr, n)
	for i := range out {
		out[i] = netip.AddrFrom4([4]byte{127, 0, 0, byte(i + 1)})
	}
	return out, nil
}

// SourceFor is the source address connection i uses: round robin, so
// every address carries an even share.
func SourceFor(addrs []netip.Addr, i int) netip.Addr {
	return addrs[i%len(addrs)]
}

// dialer dials from src on an ephemeral port.
func dialer(src netip.Addr) *net.Dialer {
	return &net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))}
}

// requireLoopback refuses any target that is not a loopback address:
// loadgen opens thousands of connections and must not point them anywhere
// but this machine.
func requireLoopback(hostport string) error {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return fmt.Errorf("target %q: %w", hostport, err)
	}
	if host == "localhost" {
		return nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.IsLoopback() {
		return fmt.Errorf("target %q is not a loopback address: loadgen only targets this machine", hostport)
	}
	return nil
}
