// Package localport picks loopback addresses for servers that a test or
// a load run starts as separate processes, which must be told their
// address before they bind it.
//
// The usual way, listening on port 0 and closing, hands out a port from
// the kernel's ephemeral range: the same range the kernel gives to the
// source end of every outgoing connection and to every other listener on
// port 0. Between the close and the server's own bind, any of those may
// take it, and the server then fails with "address already in use". A
// port outside that range is never handed out by the kernel, so only a
// program that names it explicitly can take it; this package picks from
// there, remembers what it handed out in this process, and checks each
// port is free before handing it out.
package localport

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"
)

// lowest is the lowest port picked: below it are the ports services
// commonly listen on.
const lowest = 15000

var (
	mu     sync.Mutex
	issued = map[int]bool{}
)

// Addrs returns n distinct "127.0.0.1:PORT" addresses that nothing listened
// on when they were checked, outside the kernel's ephemeral port range
// when the machine leaves room for that (otherwise the kernel's choice).
func Addrs(n int) ([]string, error) {
	spans := outside(ephemeral())
	out := make([]string, 0, n)
	for range n {
		a, err := pick(spans)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// Addr is Addrs(1)'s one address.
func Addr() (string, error) {
	a, err := Addrs(1)
	if err != nil {
		return "", err
	}
	return a[0], nil
}

type span struct{ lo, hi int } // inclusive

func pick(spans []span) (string, error) {
	size := 0
	for _, s := range spans {
		size += s.hi - s.lo + 1
	}
	mu.Lock()
	defer mu.Unlock()
	for range 200 {
		if size == 0 {
			break
		}
		i := rand.IntN(size)
		p := 0
		for _, s := range spans {
			if i < s.hi-s.lo+1 {
				p = s.lo + i
				break
			}
			i -= s.hi - s.lo + 1
		}
		if issued[p] {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue // in use
		}
		l.Close()
		issued[p] = true
		return l.Addr().String(), nil
	}
	// No room outside the ephemeral range: let the kernel choose.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("localport: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// ephemeral is the kernel's ephemeral port range, or Linux's default
// when it cannot be read.
func ephemeral() span {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return span{32768, 60999}
	}
	return parseRange(b)
}

func parseRange(b []byte) span {
	f := bytes.Fields(b)
	if len(f) != 2 {
		return span{32768, 60999}
	}
	lo, err1 := strconv.Atoi(string(f[0]))
	hi, err2 := strconv.Atoi(string(f[1]))
	if err1 != nil || err2 != nil || lo < 1 || hi > 65535 || lo > hi {
		return span{32768, 60999}
	}
	return span{lo, hi}
}

// outside is what of [lowest, 65535] lies outside e.
func outside(e span) []span {
	var out []span
	if e.lo > lowest {
		out = append(out, span{lowest, e.lo - 1})
	}
	if e.hi < 65535 {
		out = append(out, span{max(e.hi+1, lowest), 65535})
	}
	return out
}

// Refused returns a loopback address that refuses connections, and the
// close that frees it: its port is bound, so nothing else takes it, but
// not listening, so a connection to it is refused at once. (A port
// listened on and closed may be taken by another server before it is
// used.)
func Refused() (addr string, closeFn func() error, err error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		return "", nil, fmt.Errorf("socket: %w", err)
	}
	closeFn = func() error { return syscall.Close(fd) }
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		closeFn()
		return "", nil, fmt.Errorf("bind: %w", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		closeFn()
		return "", nil, fmt.Errorf("getsockname: %w", err)
	}
	return fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port), closeFn, nil
}
