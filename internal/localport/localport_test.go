package localport

import (
	"errors"
	"net"
	"strconv"
	"syscall"
	"testing"
)

// Addresses come from outside the ephemeral range, are distinct within the
// process, and can be bound.
func TestAddrsOutsideEphemeral(t *testing.T) {
	e := ephemeral()
	as, err := Addrs(50)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, a := range as {
		if seen[a] {
			t.Errorf("%s handed out twice", a)
		}
		seen[a] = true
		_, ps, _ := net.SplitHostPort(a)
		p, _ := strconv.Atoi(ps)
		if len(outside(e)) > 0 && (p >= e.lo && p <= e.hi || p < lowest) {
			t.Errorf("%s is inside the ephemeral range %d-%d or below %d", a, e.lo, e.hi, lowest)
		}
		l, err := net.Listen("tcp", a)
		if err != nil {
			t.Errorf("cannot bind %s: %v", a, err)
			continue
		}
		l.Close()
	}
}

// A port something listens on is not handed out.
func TestAddrsSkipsPortsInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(lowest))
	if err != nil {
		t.Skipf("port %d busy already: %v", lowest, err)
	}
	defer l.Close()
	for range 20 {
		a, err := pick([]span{{lowest, lowest}})
		if err != nil {
			t.Fatal(err)
		}
		if a == l.Addr().String() {
			t.Fatalf("picked %s, which is listened on", a)
		}
	}
}

func TestParseRange(t *testing.T) {
	for in, want := range map[string]span{
		"32768\t60999\n": {32768, 60999},
		"1024 65535":     {1024, 65535},
		"":               {32768, 60999},
		"9 x":            {32768, 60999},
		"60000 1000":     {32768, 60999},
		"0 70000":        {32768, 60999},
	} {
		if got := parseRange([]byte(in)); got != want {
			t.Errorf("parseRange(%q) = %v, want %v", in, got, want)
		}
	}
	if got := outside(span{1024, 65535}); len(got) != 0 {
		t.Errorf("outside(all) = %v, want nothing", got)
	}
	if got := outside(span{32768, 60999}); len(got) != 2 || got[0] != (span{lowest, 32767}) || got[1] != (span{61000, 65535}) {
		t.Errorf("outside(default) = %v", got)
	}
}

// TestRefused: the address refuses connections, no one else can listen
// on it while it is held, and it is free once closed.
func TestRefused(t *testing.T) {
	addr, closeFn, err := Refused()
	if err != nil {
		t.Fatal(err)
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatalf("a connection to %s was taken", addr)
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial %s: %v, want connection refused", addr, err)
	}
	if ln, err := net.Listen("tcp", addr); err == nil {
		ln.Close()
		t.Errorf("another socket listened on %s while it was held", addr)
	}
	if err := closeFn(); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("%s not free once closed: %v", addr, err)
	}
	ln.Close()
}
