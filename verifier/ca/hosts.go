package ca

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
)

// hostSet is the normalized names a server certificate covers: DNS names
// lower-cased without a trailing dot, IP addresses in canonical form (an
// IPv4-mapped IPv6 address counts as IPv4). Both sorted and deduplicated, so
// two sets compare equal whatever order the hosts were given in.
type hostSet struct {
	dns []string
	ips []netip.Addr
}

func parseHosts(hosts []string) (hostSet, error) {
	var s hostSet
	if len(hosts) == 0 {
		return s, errors.New("no hosts for the TLS server certificate: Options.Hosts is empty")
	}
	for _, h := range hosts {
		if ip, err := netip.ParseAddr(h); err == nil {
			if ip.Zone() != "" {
				return s, fmt.Errorf("host %q: an IP address with a zone cannot go in a certificate", h)
			}
			s.ips = append(s.ips, ip.Unmap())
			continue
		}
		name, err := dnsName(h)
		if err != nil {
			return s, fmt.Errorf("host %q: %w", h, err)
		}
		s.dns = append(s.dns, name)
	}
	s.normalize()
	return s, nil
}

func hostsOf(c *x509.Certificate) hostSet {
	s := hostSet{dns: slices.Clone(c.DNSNames)}
	for i, n := range s.dns {
		s.dns[i] = strings.ToLower(n)
	}
	for _, ip := range c.IPAddresses {
		if a, ok := netip.AddrFromSlice(ip); ok {
			s.ips = append(s.ips, a.Unmap())
		}
	}
	s.normalize()
	return s
}

func (s *hostSet) normalize() {
	slices.Sort(s.dns)
	s.dns = slices.Compact(s.dns)
	slices.SortFunc(s.ips, netip.Addr.Compare)
	s.ips = slices.Compact(s.ips)
}

func (s hostSet) equal(o hostSet) bool {
	return slices.Equal(s.dns, o.dns) && slices.Equal(s.ips, o.ips)
}

func (s hostSet) netIPs() []net.IP {
	out := make([]net.IP, len(s.ips))
	for i, a := range s.ips {
		out[i] = net.IP(a.AsSlice())
	}
	return out
}

// commonName is what old clients that still read the CN would match.
func (s hostSet) commonName() string {
	if len(s.dns) > 0 {
		return s.dns[0]
	}
	return s.ips[0].String()
}

// dnsName checks h is a host name a certificate can carry (optionally one
// leading wildcard label) and returns it lower-cased without a trailing dot.
// It catches the usual mistakes early: a URL or host:port instead of a host.
func dnsName(h string) (string, error) {
	if strings.Contains(h, "://") {
		return "", errors.New("want a host name, not a URL")
	}
	if strings.Contains(h, ":") || strings.HasPrefix(h, "[") {
		return "", errors.New("want a host name or IP address without a port")
	}
	name := strings.ToLower(strings.TrimSuffix(h, "."))
	if name == "" || len(name) > 253 {
		return "", errors.New("not a valid host name")
	}
	for i, label := range strings.Split(name, ".") {
		if i == 0 && label == "*" && strings.Contains(name, ".") {
			continue
		}
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "", errors.New("not a valid host name")
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return "", fmt.Errorf("not a valid host name: character %q", r)
			}
		}
	}
	return name, nil
}
