package presence

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

var (
	agentAddr  = netip.MustParseAddrPort("127.0.0.1:47470")
	clientAddr = netip.MustParseAddrPort("127.0.0.1:53211")
)

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFindSocketInode(t *testing.T) {
	t.Parallel()
	tcp, tcp6 := fixture(t, "proc-net-tcp.txt"), fixture(t, "proc-net-tcp6.txt")
	tests := []struct {
		name           string
		table          []byte
		client, server string
		inode          uint64
		found          bool
	}{
		// Not the agent's own end (inode 2000), not a client on another
		// address with the same port (4000), not the listener (1000).
		{"client end", tcp, "127.0.0.1:53211", "127.0.0.1:47470", 3000, true},
		{"time-wait socket is skipped", tcp, "127.0.0.1:53210", "127.0.0.1:47470", 0, false},
		{"unknown port", tcp, "127.0.0.1:50000", "127.0.0.1:47470", 0, false},
		{"other server", tcp, "127.0.0.1:53211", "127.0.0.1:47471", 0, false},
		{"IPv4-mapped client on a dual-stack socket", tcp6, "127.0.0.1:53300", "127.0.0.1:47470", 5000, true},
		{"IPv6 loopback", tcp6, "[::1]:53301", "[::1]:47470", 6000, true},
	}
	for _, tc := range tests {
		inode, found, err := findSocketInode(bytes.NewReader(tc.table), binary.LittleEndian,
			netip.MustParseAddrPort(tc.client), netip.MustParseAddrPort(tc.server))
		if err != nil || inode != tc.inode || found != tc.found {
			t.Errorf("%s: = %d, %v, %v; want %d, %v", tc.name, inode, found, err, tc.inode, tc.found)
		}
	}
	for name, table := range map[string]string{
		"short line": "header\n 0: 0100007F:CFDB 0100007F:B96E 01\n",
		"bad hex":    "header\n 0: 0100007G:CFDB 0100007F:B96E 01 0:0 0:0 0 1000 0 3000\n",
		"bad length": "header\n 0: 100007F:CFDB 0100007F:B96E 01 0:0 0:0 0 1000 0 3000\n",
		"bad port":   "header\n 0: 0100007F:CFDBX 0100007F:B96E 01 0:0 0:0 0 1000 0 3000\n",
		"bad inode":  "header\n 0: 0100007F:CFDB 0100007F:B96E 01 0:0 0:0 0 1000 0 -1\n",
	} {
		if _, _, err := findSocketInode(strings.NewReader(table), binary.LittleEndian, clientAddr, agentAddr); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// fakeMac plays lsof and codesign from recorded outputs.
type fakeMac struct {
	lsof      string // fixture under testdata/lsof, "" for none
	lsofExit  int
	lsofErr   error
	display   map[int]string // pid → fixture under testdata/codesign, or literal output
	satisfied map[int]int    // pid → exit status of codesign --verify
	calls     [][]string
}

func (f *fakeMac) run(t *testing.T) runner {
	return func(_ context.Context, name string, args ...string) ([]byte, []byte, int, error) {
		f.calls = append(f.calls, append([]string{name}, args...))
		switch name {
		case lsofPath:
			if f.lsofErr != nil {
				return nil, nil, -1, f.lsofErr
			}
			if f.lsof == "" {
				return nil, nil, 1, nil
			}
			return fixture(t, filepath.Join("lsof", f.lsof)), nil, f.lsofExit, nil
		case codesignPath:
			pid, err := strconv.Atoi(args[len(args)-1])
			if err != nil {
				t.Fatalf("codesign not given a pid: %q", args)
			}
			switch args[0] {
			case "--display":
				out, ok := f.display[pid]
				if !ok {
					return nil, []byte(fmt.Sprintf("%d: code object is not signed at all\n", pid)), 1, nil
				}
				if strings.HasSuffix(out, ".txt") {
					return nil, fixture(t, filepath.Join("codesign", out)), 0, nil
				}
				return nil, []byte(out), 0, nil
			case "--verify":
				exit, ok := f.satisfied[pid]
				if !ok {
					exit = codesignUnsatisfied
				}
				msg := ""
				if exit == codesignUnsatisfied {
					msg = fmt.Sprintf("%d: does not satisfy its designated Requirement\n", pid)
				}
				return nil, []byte(msg), exit, nil
			}
		}
		t.Fatalf("unexpected command %s %q", name, args)
		return nil, nil, 0, nil
	}
}

func TestSigningCheck(t *testing.T) {
	t.Parallel()
	ipv6Client, ipv6Server := netip.MustParseAddrPort("[::1]:53300"), netip.MustParseAddrPort("[::1]:47470")
	tests := []struct {
		name     string
		mac      fakeMac
		b        Browsers
		client   netip.AddrPort
		server   netip.AddrPort
		allowed  bool
		notBrows bool // the error is ErrNotBrowser
		pids     []int
		program  string
	}{
		{name: "Chrome's network helper", mac: fakeMac{lsof: "chrome-helper.txt", display: map[int]string{812: "chrome-helper.txt"}, satisfied: map[int]int{812: 0}},
			allowed: true, pids: []int{812}, program: "Google Chrome Helper (identifier com.google.Chrome.helper, team EQHXZ8M8AV)"},
		{name: "Safari's network process", mac: fakeMac{lsof: "chrome-helper.txt", display: map[int]string{812: "webkit-networking.txt"}, satisfied: map[int]int{812: 0}},
			allowed: true, pids: []int{812}, program: "com.apple.WebKit.Networking (identifier com.apple.WebKit.Networking, team none)"},
		{name: "over IPv6", mac: fakeMac{lsof: "ipv6.txt", display: map[int]string{812: "chrome-helper.txt"}, satisfied: map[int]int{812: 0}},
			client: ipv6Client, server: ipv6Server, allowed: true, pids: []int{812}},
		{name: "lsof exits 1 but found it", mac: fakeMac{lsof: "chrome-helper.txt", lsofExit: 1, display: map[int]string{812: "chrome-helper.txt"}, satisfied: map[int]int{812: 0}},
			allowed: true, pids: []int{812}},
		{name: "curl", mac: fakeMac{lsof: "chrome-helper.txt", display: map[int]string{812: "curl.txt"}},
			notBrows: true, pids: []int{812}, program: "/usr/bin/curl (identifier com.apple.curl, team none)"},
		{name: "ad-hoc signed python", mac: fakeMac{lsof: "chrome-helper.txt", display: map[int]string{812: "python-adhoc.txt"}},
			notBrows: true, pids: []int{812}, program: "python3.13"},
		{name: "unsigned program", mac: fakeMac{lsof: "chrome-helper.txt"},
			notBrows: true, pids: []int{812}},
		{name: "self-signed with a browser's Team ID", mac: fakeMac{lsof: "chrome-helper.txt", display: map[int]string{812: "fake-team.txt"}},
			notBrows: true, pids: []int{812}, program: "team EQHXZ8M8AV"},
		// codesign accepting a program whose claims are not on the list
		// cannot happen with a correct requirement; the second check
		// still refuses it.
		{name: "satisfied but another team", mac: fakeMac{lsof: "chrome-helper.txt", display: map[int]string{812: "Executable=/Applications/X.app/Contents/MacOS/X\nIdentifier=com.example.x\nTeamIdentifier=ABCDE12345\n"}, satisfied: map[int]int{812: 0}},
			notBrows: true, pids: []int{812}},
		{name: "satisfied but another Apple program", mac: fakeMac{lsof: "chrome-helper.txt", display: map[int]string{812: "curl.txt"}, satisfied: map[int]int{812: 0}},
			notBrows: true, pids: []int{812}},
		{name: "Safari when Apple programs are not allowed", mac: fakeMac{lsof: "chrome-helper.txt", display: map[int]string{812: "webkit-networking.txt"}, satisfied: map[int]int{812: 0}},
			b: Browsers{TeamIDs: []string{"EQHXZ8M8AV"}, AppleIdentifiers: []string{}}, notBrows: true, pids: []int{812}},
		{name: "socket shared with an unsigned program", mac: fakeMac{lsof: "shared.txt", display: map[int]string{812: "chrome-helper.txt"}, satisfied: map[int]int{812: 0}},
			notBrows: true, pids: []int{812, 4242}},
		{name: "lsof finds only the agent", mac: fakeMac{lsof: "only-agent.txt"}},
		{name: "lsof finds nothing", mac: fakeMac{}},
		{name: "lsof fails", mac: fakeMac{lsof: "chrome-helper.txt", lsofExit: 2}},
		{name: "lsof cannot run", mac: fakeMac{lsofErr: errors.New("exec: no such file")}},
		{name: "codesign usage error", mac: fakeMac{lsof: "chrome-helper.txt", display: map[int]string{812: "chrome-helper.txt"}, satisfied: map[int]int{812: 2}}, pids: []int{812}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := newSigningCheck(tc.b, tc.mac.run(t))
			if err != nil {
				t.Fatal(err)
			}
			client, server := clientAddr, agentAddr
			if tc.client.IsValid() {
				client, server = tc.client, tc.server
			}
			peer, err := c.CheckPeer(context.Background(), server, client)
			switch {
			case tc.allowed && err != nil:
				t.Fatalf("refused: %v", err)
			case !tc.allowed && err == nil:
				t.Fatalf("allowed %v", peer)
			case !tc.allowed && errors.Is(err, ErrNotBrowser) != tc.notBrows:
				t.Fatalf("error %v: ErrNotBrowser = %v, want %v", err, errors.Is(err, ErrNotBrowser), tc.notBrows)
			}
			if !slices.Equal(peer.PIDs, tc.pids) {
				t.Errorf("PIDs = %v, want %v", peer.PIDs, tc.pids)
			}
			if !strings.Contains(peer.Program, tc.program) {
				t.Errorf("Program = %q, want it to mention %q", peer.Program, tc.program)
			}
			if len(tc.mac.calls) == 0 || tc.mac.calls[0][0] != lsofPath {
				t.Fatalf("lsof not run first: %q", tc.mac.calls)
			}
			if want := "-iTCP@" + client.String(); !slices.Contains(tc.mac.calls[0], want) {
				t.Errorf("lsof run without %s: %q", want, tc.mac.calls[0])
			}
			for _, call := range tc.mac.calls[1:] {
				if call[1] == "--verify" && !slices.Equal(call[1:5], []string{"--verify", "--strict", "-R", "=" + c.requirement}) {
					t.Errorf("codesign --verify run as %q", call)
				}
			}
		})
	}
}

func TestRequirement(t *testing.T) {
	t.Parallel()
	got := requirement([]string{"43AQ936H96", "EQHXZ8M8AV"}, []string{"com.apple.Safari"})
	want := `(anchor apple and (identifier "com.apple.Safari")) or ` +
		`(anchor apple generic and (certificate leaf[subject.OU] = "43AQ936H96" or certificate leaf[subject.OU] = "EQHXZ8M8AV") and ` +
		`(certificate leaf[field.1.2.840.113635.100.6.1.9] exists or ` +
		`(certificate 1[field.1.2.840.113635.100.6.2.6] exists and certificate leaf[field.1.2.840.113635.100.6.1.13] exists)))`
	if got != want {
		t.Fatalf("requirement =\n%s\nwant\n%s", got, want)
	}
	c, err := newSigningCheck(Browsers{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, team := range DefaultTeamIDs {
		if !strings.Contains(c.requirement, `"`+team+`"`) {
			t.Errorf("default requirement lacks %s", team)
		}
	}
	for _, id := range DefaultAppleIdentifiers {
		if !strings.Contains(c.requirement, `identifier "`+id+`"`) {
			t.Errorf("default requirement lacks %s", id)
		}
	}
}

func TestSigningCheckConfig(t *testing.T) {
	t.Parallel()
	for name, b := range map[string]Browsers{
		"lower-case team":       {TeamIDs: []string{"eqhxz8m8av"}},
		"short team":            {TeamIDs: []string{"EQHXZ8M8A"}},
		"requirement injection": {TeamIDs: []string{`EQHXZ8M8AV" or anchor apple generic or "`}},
		"quoted identifier":     {AppleIdentifiers: []string{`com.apple.Safari" or anchor apple or "`}},
		"empty identifier":      {AppleIdentifiers: []string{""}},
		"nothing allowed":       {TeamIDs: []string{}, AppleIdentifiers: []string{}},
		"Linux executables":     {Executables: []string{"/Applications/Safari.app/Contents/MacOS/Safari"}},
	} {
		if _, err := newSigningCheck(b, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestParseCodesignDisplay(t *testing.T) {
	t.Parallel()
	for file, want := range map[string]signingInfo{
		"chrome-helper.txt": {
			Executable: "/Applications/Google Chrome.app/Contents/Frameworks/Google Chrome Framework.framework/Versions/131.0.6778.86/Helpers/Google Chrome Helper.app/Contents/MacOS/Google Chrome Helper",
			Identifier: "com.google.Chrome.helper", TeamID: "EQHXZ8M8AV",
		},
		"webkit-networking.txt": {
			Executable: "/System/Library/Frameworks/WebKit.framework/Versions/A/XPCServices/com.apple.WebKit.Networking.xpc/Contents/MacOS/com.apple.WebKit.Networking",
			Identifier: "com.apple.WebKit.Networking",
		},
		"curl.txt":         {Executable: "/usr/bin/curl", Identifier: "com.apple.curl"},
		"python-adhoc.txt": {Executable: "/opt/homebrew/Cellar/python@3.13/3.13.0/Frameworks/Python.framework/Versions/3.13/bin/python3.13", Identifier: "python3.13"},
		"unsigned.txt":     {},
	} {
		if got := parseCodesignDisplay(fixture(t, filepath.Join("codesign", file))); got != want {
			t.Errorf("%s: %+v, want %+v", file, got, want)
		}
	}
}

func TestParseLsof(t *testing.T) {
	t.Parallel()
	pids, err := parseLsof(fixture(t, "lsof/shared.txt"), clientAddr, agentAddr)
	if err != nil || !slices.Equal(pids, []int{812, 4242}) {
		t.Fatalf("shared socket: %v, %v", pids, err)
	}
	for name, out := range map[string]string{
		"bad pid":       "pX\nn127.0.0.1:53211->127.0.0.1:47470\n",
		"zero pid":      "p0\nn127.0.0.1:53211->127.0.0.1:47470\n",
		"name, no pid":  "n127.0.0.1:53211->127.0.0.1:47470\n",
		"reversed ends": "p1\nn127.0.0.1:47470->127.0.0.1:53211\n",
		"listener":      "p1\nn127.0.0.1:47470\n",
		"host names":    "p1\nnlocalhost:53211->localhost:47470\n",
	} {
		if pids, err := parseLsof([]byte(out), clientAddr, agentAddr); err == nil {
			t.Errorf("%s: found %v", name, pids)
		}
	}
}

// FuzzPeerOutputs feeds arbitrary bytes to the parsers of /proc/net/tcp,
// lsof and codesign output. Nothing may panic; what they return must
// describe the connection asked about.
func FuzzPeerOutputs(f *testing.F) {
	for _, name := range []string{"proc-net-tcp.txt", "proc-net-tcp6.txt", "lsof/shared.txt", "lsof/ipv6.txt", "codesign/chrome-helper.txt"} {
		f.Add(fixture(f, name))
	}
	f.Fuzz(func(t *testing.T, out []byte) {
		if inode, found, err := findSocketInode(bytes.NewReader(out), binary.LittleEndian, clientAddr, agentAddr); err == nil && found && inode == 0 {
			t.Fatal("found inode 0")
		}
		if pids, err := parseLsof(out, clientAddr, agentAddr); err == nil {
			if len(pids) == 0 || !slices.IsSorted(pids) || slices.Contains(pids, 0) {
				t.Fatalf("pids %v", pids)
			}
		}
		info := parseCodesignDisplay(out)
		if info.TeamID == "not set" {
			t.Fatal("TeamID holds codesign's placeholder")
		}
	})
}
