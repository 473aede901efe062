package presence

// The macOS browser check lives here, outside any _darwin file, so that its
// parsing and decisions are tested on every platform with recorded outputs
// of lsof and codesign; peer_darwin.go only wires it to the real commands.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DefaultTeamIDs are the Apple Developer Team IDs of browser vendors. Each
// is the expectedTeamID that Installomator (github.com/Installomator/
// Installomator, fragments/labels/<label>.sh) checks before installing
// that vendor's browser; the same IDs appear in Apple's own browser list
// for PasswordManagerBrowserExtensionHelper.
var DefaultTeamIDs = []string{
	"EQHXZ8M8AV", // Google LLC: Chrome (label googlechrome)
	"43AQ936H96", // Mozilla Corporation: Firefox (label firefox)
	"UBF8T346G9", // Microsoft Corporation: Edge (label microsoftedge)
	"KL8N8XSYF4", // Brave Software, Inc.: Brave (label brave)
	"S6N382Y83G", // The Browser Company of New York Inc.: Arc (label arcbrowser)
	"4XF3XNRN6Y", // Vivaldi Technologies AS: Vivaldi (label vivaldi)
	"A2P9LX4JPN", // Opera Software AS: Opera (label opera)
}

// DefaultAppleIdentifiers are Apple's own programs that load pages for
// Safari. Safari's network requests come from WebKit's network process,
// whose identifier is set in WebKit's Source/WebKit/Configurations/
// NetworkService.xcconfig (PRODUCT_NAME = com.apple.WebKit.Networking).
// Any app that embeds a WebKit view uses the same network process.
var DefaultAppleIdentifiers = []string{
	"com.apple.Safari",
	"com.apple.WebKit.Networking",
}

// Paths of the tools; absolute, so PATH never matters to a root daemon.
const (
	lsofPath     = "/usr/sbin/lsof"
	codesignPath = "/usr/bin/codesign"
)

// codesign's exit status when code does not satisfy -R's requirement.
const codesignUnsatisfied = 3

var (
	teamIDPattern     = regexp.MustCompile(`^[A-Z0-9]{10}$`)
	appleIDPattern    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9.-]{0,127}$`)
	errNoSuchProgram  = errors.New("no process found")
	errNothingAllowed = errors.New("no browser Team IDs or Apple identifiers allowed")
)

// runner runs a command and returns its outputs and exit status; err is
// for a command that could not run or finish.
type runner func(ctx context.Context, name string, args ...string) (stdout, stderr []byte, exit int, err error)

// signingCheck finds the peer with lsof and checks its code signature with
// codesign against a requirement built from the allowed teams and Apple
// identifiers.
type signingCheck struct {
	run         runner
	teams       map[string]bool
	apple       map[string]bool
	requirement string
}

var _ PeerCheck = (*signingCheck)(nil)

func newSigningCheck(b Browsers, run runner) (*signingCheck, error) {
	if len(b.Executables) > 0 {
		return nil, errors.New("browser executables apply on Linux; on macOS list Team IDs or Apple identifiers")
	}
	teams, apple := b.TeamIDs, b.AppleIdentifiers
	if teams == nil {
		teams = DefaultTeamIDs
	}
	if apple == nil {
		apple = DefaultAppleIdentifiers
	}
	c := &signingCheck{run: run, teams: map[string]bool{}, apple: map[string]bool{}}
	for _, t := range teams {
		if !teamIDPattern.MatchString(t) {
			return nil, fmt.Errorf("browser Team ID %q is not 10 upper-case letters or digits", t)
		}
		c.teams[t] = true
	}
	for _, id := range apple {
		if !appleIDPattern.MatchString(id) {
			return nil, fmt.Errorf("Apple identifier %q is not a bundle identifier", id)
		}
		c.apple[id] = true
	}
	if len(c.teams) == 0 && len(c.apple) == 0 {
		return nil, errNothingAllowed
	}
	c.requirement = requirement(sortedKeys(c.teams), sortedKeys(c.apple))
	return c, nil
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// requirement is a code requirement (Apple's requirement language) that
// accepts Apple-signed code with one of the apple identifiers, or code that
// a listed team signed with a Developer ID Application certificate or for
// the Mac App Store. The Team ID shown by codesign -d is whatever the
// signer wrote; only a requirement anchored at Apple's CA proves it. The
// Developer ID clause is Apple's standard designated requirement (as in
// Chromium's app shim tests); 1.2.840.113635.100.6.1.9 marks Mac App Store
// signing.
func requirement(teams, apple []string) string {
	var alts []string
	if len(apple) > 0 {
		ids := make([]string, len(apple))
		for i, id := range apple {
			ids[i] = `identifier "` + id + `"`
		}
		alts = append(alts, "(anchor apple and ("+strings.Join(ids, " or ")+"))")
	}
	if len(teams) > 0 {
		ous := make([]string, len(teams))
		for i, t := range teams {
			ous[i] = `certificate leaf[subject.OU] = "` + t + `"`
		}
		alts = append(alts, "(anchor apple generic and ("+strings.Join(ous, " or ")+") and "+
			"(certificate leaf[field.1.2.840.113635.100.6.1.9] exists or "+
			"(certificate 1[field.1.2.840.113635.100.6.2.6] exists and certificate leaf[field.1.2.840.113635.100.6.1.13] exists)))")
	}
	return strings.Join(alts, " or ")
}

func (c *signingCheck) CheckPeer(ctx context.Context, server, client netip.AddrPort) (Peer, error) {
	// 1. Who holds the client end: lsof lists both ends of the connection
	// (the agent's own socket too); parseLsof keeps the client's.
	out, stderr, exit, err := c.run(ctx, lsofPath, "-nP", "-w", "-iTCP@"+client.String(), "-sTCP:ESTABLISHED", "-Fpn")
	if err != nil {
		return Peer{}, fmt.Errorf("running lsof: %w", err)
	}
	// lsof exits 1 when it finds nothing; the parse below says so.
	if exit != 0 && exit != 1 {
		return Peer{}, fmt.Errorf("lsof exited %d: %s", exit, firstLine(stderr))
	}
	pids, err := parseLsof(out, client, server)
	if err != nil {
		return Peer{}, err
	}
	// 2. Each holder's signature: the running process's, by pid, so a
	// file swapped on disk after launch changes nothing.
	peer := Peer{PIDs: pids}
	for _, pid := range pids {
		info, err := c.describe(ctx, pid)
		peer.Program = info.String()
		if err != nil {
			return peer, err
		}
		if err := c.verify(ctx, pid, info); err != nil {
			return peer, err
		}
	}
	return peer, nil
}

// describe runs codesign -d for what the process claims to be.
func (c *signingCheck) describe(ctx context.Context, pid int) (signingInfo, error) {
	_, stderr, exit, err := c.run(ctx, codesignPath, "--display", "--verbose=2", strconv.Itoa(pid))
	if err != nil {
		return signingInfo{}, fmt.Errorf("running codesign: %w", err)
	}
	info := parseCodesignDisplay(stderr)
	if exit != 0 {
		// Unsigned code ("code object is not signed at all") lands
		// here, as does a process that has gone.
		return info, fmt.Errorf("%w: pid %d: %s", ErrNotBrowser, pid, firstLine(stderr))
	}
	return info, nil
}

// verify checks the process against the requirement, then that what it
// claims is on the list: the second is implied by the first, and checked
// again so that a flaw in either alone does not let a program through.
func (c *signingCheck) verify(ctx context.Context, pid int, info signingInfo) error {
	_, stderr, exit, err := c.run(ctx, codesignPath, "--verify", "--strict", "-R", "="+c.requirement, strconv.Itoa(pid))
	if err != nil {
		return fmt.Errorf("running codesign: %w", err)
	}
	switch exit {
	case 0:
	case 1, codesignUnsatisfied:
		return fmt.Errorf("%w: %s: %s", ErrNotBrowser, info, firstLine(stderr))
	default:
		return fmt.Errorf("codesign exited %d: %s", exit, firstLine(stderr))
	}
	switch {
	case info.TeamID != "" && c.teams[info.TeamID]:
		return nil
	case info.TeamID == "" && c.apple[info.Identifier]:
		return nil
	}
	return fmt.Errorf("%w: %s is not on the list", ErrNotBrowser, info)
}

// signingInfo is what codesign -dv prints about a program.
type signingInfo struct {
	Executable, Identifier, TeamID string
}

func (i signingInfo) String() string {
	team := i.TeamID
	if team == "" {
		team = "none"
	}
	return fmt.Sprintf("%s (identifier %s, team %s)", i.Executable, i.Identifier, team)
}

// parseCodesignDisplay reads codesign --display --verbose=2 output
// (written to stderr): Key=value lines, of which Executable, Identifier and
// TeamIdentifier matter; "TeamIdentifier=not set" means Apple's own code or
// ad-hoc signing.
func parseCodesignDisplay(out []byte) signingInfo {
	var info signingInfo
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		switch k {
		case "Executable":
			info.Executable = v
		case "Identifier":
			info.Identifier = v
		case "TeamIdentifier":
			if v != "not set" {
				info.TeamID = v
			}
		}
	}
	return info
}

// parseLsof reads lsof -F pn output: "p<pid>" starts a process, and each
// "n<local>-><remote>" names one of its sockets. It returns the pids that
// hold a socket whose local end is client and remote end is server.
func parseLsof(out []byte, client, server netip.AddrPort) ([]int, error) {
	var pids []int
	pid := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		switch line[0] {
		case 'p':
			n, err := strconv.Atoi(line[1:])
			if err != nil || n <= 0 {
				return nil, fmt.Errorf("lsof printed a bad pid line %q", line)
			}
			pid = n
		case 'n':
			l, r, ok := strings.Cut(line[1:], "->")
			if !ok || pid == 0 {
				continue
			}
			local, err1 := netip.ParseAddrPort(l)
			remote, err2 := netip.ParseAddrPort(r)
			if err1 != nil || err2 != nil || !sameConn(local, remote, client, server) {
				continue
			}
			if !slices.Contains(pids, pid) {
				pids = append(pids, pid)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading lsof output: %w", err)
	}
	if len(pids) == 0 {
		return nil, fmt.Errorf("%w holding %s->%s", errNoSuchProgram, client, server)
	}
	slices.Sort(pids)
	return pids, nil
}

func firstLine(b []byte) string {
	line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	if len(line) > 200 {
		line = line[:200] + "…"
	}
	return line
}

// commandTimeout bounds each lsof or codesign run.
const commandTimeout = 5 * time.Second

// maxOutput bounds what is kept of a command's output.
const maxOutput = 1 << 20

// execRunner runs a real command with a fixed environment (the C locale, so
// output is not translated) and bounded time and output.
func execRunner(ctx context.Context, name string, args ...string) ([]byte, []byte, int, error) {
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = []string{"PATH=/usr/bin:/bin:/usr/sbin:/sbin", "LC_ALL=C"}
	var stdout, stderr limitedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return stdout.Bytes(), stderr.Bytes(), 0, nil
	case ctx.Err() != nil:
		return nil, nil, -1, fmt.Errorf("%s: %w", name, ctx.Err())
	case errors.As(err, &exitErr) && exitErr.ExitCode() >= 0:
		return stdout.Bytes(), stderr.Bytes(), exitErr.ExitCode(), nil
	default:
		return nil, nil, -1, err
	}
}

// limitedBuffer keeps the first maxOutput bytes and drops the rest, so a
// runaway command cannot fill memory.
type limitedBuffer struct{ bytes.Buffer }

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := maxOutput - b.Len(); room > 0 {
		b.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
