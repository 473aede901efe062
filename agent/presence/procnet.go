package presence

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
)

// tcpEstablished is TCP_ESTABLISHED in /proc/net/tcp's "st" column.
const tcpEstablished = "01"

// findSocketInode reads a /proc/net/tcp or /proc/net/tcp6 table and returns
// the inode of the established socket whose local end is client and remote
// end is server: the client's side of a connection the agent accepted.
// Addresses are printed as 32-bit words in the kernel's byte order, which
// order gives.
func findSocketInode(r io.Reader, order binary.ByteOrder, client, server netip.AddrPort) (uint64, bool, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<16)
	first := true
	for sc.Scan() {
		if first { // the header line
			first = false
			continue
		}
		f := strings.Fields(sc.Text())
		// sl local rem st tx:rx tr:when retrnsmt uid timeout inode …
		if len(f) < 10 {
			return 0, false, fmt.Errorf("unexpected line with %d fields", len(f))
		}
		if f[3] != tcpEstablished {
			continue
		}
		local, err := parseProcAddr(f[1], order)
		if err != nil {
			return 0, false, err
		}
		remote, err := parseProcAddr(f[2], order)
		if err != nil {
			return 0, false, err
		}
		if !sameConn(local, remote, client, server) {
			continue
		}
		inode, err := strconv.ParseUint(f[9], 10, 64)
		if err != nil {
			return 0, false, fmt.Errorf("bad inode %q", f[9])
		}
		if inode == 0 {
			// An orphaned socket no process holds.
			return 0, false, nil
		}
		return inode, true, nil
	}
	if err := sc.Err(); err != nil {
		return 0, false, err
	}
	return 0, false, nil
}

// parseProcAddr reads "0100007F:B8AE" (IPv4) or 32 hex digits and a port
// (IPv6).
func parseProcAddr(s string, order binary.ByteOrder) (netip.AddrPort, error) {
	host, port, ok := strings.Cut(s, ":")
	if !ok || len(port) != 4 || (len(host) != 8 && len(host) != 32) {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	raw, err := hex.DecodeString(host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	p, err := strconv.ParseUint(port, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad port in %q", s)
	}
	// Each 32-bit word was printed as a number in host byte order.
	b := make([]byte, len(raw))
	for i := 0; i < len(raw); i += 4 {
		order.PutUint32(b[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	a, ok := netip.AddrFromSlice(b)
	if !ok {
		return netip.AddrPort{}, errors.New("unreachable: 4 or 16 bytes")
	}
	return netip.AddrPortFrom(a, uint16(p)), nil
}

// socketInodeLink is what readlink gives for a socket fd in /proc/<pid>/fd.
func socketInodeLink(inode uint64) string { return "socket:[" + strconv.FormatUint(inode, 10) + "]" }
