package presence_test

import (
	"bytes"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/clearance/clearance/agent/presence"
	pp "github.com/clearance/clearance/pkg/presence"
)

func browserCheck(t *testing.T, executables ...string) presence.PeerCheck {
	t.Helper()
	pc, err := presence.NewBrowserCheck(presence.Browsers{Executables: executables})
	if err != nil {
		t.Fatal(err)
	}
	return pc
}

func testBinary(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// The client in these tests is this test binary: the real /proc says so.
func TestLinuxBrowserCheckRefusesUnlisted(t *testing.T) {
	t.Parallel()
	a := start(t, func(o *presence.Options) { o.Peer = browserCheck(t, "/usr/bin/firefox") })
	c := pp.NewChallenge()
	checkRefused(t, a, get(t, a.url(c)), http.StatusForbidden, "peer_not_browser", c)
	if !strings.Contains(a.logs.String(), testBinary(t)) {
		t.Fatalf("log does not name the program that asked:\n%s", a.logs.String())
	}
}

func TestLinuxBrowserCheckAllowsListed(t *testing.T) {
	t.Parallel()
	a := start(t, func(o *presence.Options) { o.Peer = browserCheck(t, "/usr/bin/firefox", testBinary(t)) })
	c := pp.NewChallenge()
	checkSigned(t, a, get(t, a.url(c)), c)
	// Another parallel test's fork may hold the socket for a moment before
	// it execs (then it is this same binary): the pid list may be longer.
	if logs := a.logs.String(); !strings.Contains(logs, testBinary(t)) || !regexp.MustCompile(fmt.Sprintf(`peer="pid [0-9,]*\b%d\b`, os.Getpid())).MatchString(logs) {
		t.Fatalf("log does not name the browser:\n%s", logs)
	}
}

// lookBash returns bash's path and the file it names, or skips the test.
func lookBash(t *testing.T) (path, file string) {
	t.Helper()
	path, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	file, err = filepath.EvalSymlinks(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, file
}

// A script in another process, here bash with its /dev/tcp, is refused
// unless its interpreter is listed.
func TestLinuxBrowserCheckScriptInAnotherProcess(t *testing.T) {
	t.Parallel()
	bash, bashExe := lookBash(t)
	// Only bash's builtins touch the socket, unless share is set: then a
	// sleep started before the request inherits it. The request waits
	// until the child runs sleep: until its exec, the child is bash, a
	// program the check may list.
	fetch := func(a *agent, challenge string, share bool) string {
		u, _ := url.Parse(a.url(challenge))
		child, reap := "", ""
		if share {
			child = `sleep 30 &
while [ "$(readlink /proc/$!/exe 3<&-)" = "$(readlink /proc/$$/exe 3<&-)" ]; do :; done
`
			reap = "; kill $!"
		}
		script := fmt.Sprintf(`exec 3<>/dev/tcp/127.0.0.1/%d
%sprintf '%%s' "$REQUEST" >&3
while IFS= read -r line <&3; do printf '%%s\n' "$line"; done%s`, a.srv.Addr().Port(), child, reap)
		var out bytes.Buffer
		cmd := exec.Command(bash, "-c", script)
		cmd.Env = append(os.Environ(), fmt.Sprintf("REQUEST=GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", u.RequestURI(), u.Host))
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Fatalf("bash: %v\n%s", err, out.String())
		}
		return out.String()
	}

	a := start(t, func(o *presence.Options) { o.Peer = browserCheck(t, testBinary(t)) })
	c := pp.NewChallenge()
	out := fetch(a, c, false)
	if !strings.HasPrefix(out, "HTTP/1.1 403 ") || strings.Contains(out, "Location:") {
		t.Fatalf("a script got:\n%s", out)
	}
	if logs := a.logs.String(); !strings.Contains(logs, "reason=peer_not_browser") || !strings.Contains(logs, bashExe) {
		t.Fatalf("log does not name the script's interpreter %s:\n%s", bashExe, logs)
	}

	a = start(t, func(o *presence.Options) { o.Peer = browserCheck(t, bashExe) })
	c = pp.NewChallenge()
	if out := fetch(a, c, false); !strings.HasPrefix(out, "HTTP/1.1 303 ") || !strings.Contains(out, "Location: "+presenceURL+"?statement=") {
		t.Fatalf("a listed program got:\n%s\n%s", out, a.logs.String())
	}

	// Every program holding the socket must be listed.
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep")
	}
	if sleep, err = filepath.EvalSymlinks(sleep); err != nil {
		t.Fatal(err)
	}
	a = start(t, func(o *presence.Options) { o.Peer = browserCheck(t, bashExe) })
	c = pp.NewChallenge()
	if out := fetch(a, c, true); !strings.HasPrefix(out, "HTTP/1.1 403 ") {
		t.Fatalf("a socket shared with an unlisted program got:\n%s", out)
	}
	if logs := a.logs.String(); !strings.Contains(logs, "reason=peer_not_browser") || !strings.Contains(logs, sleep) {
		t.Fatalf("log does not name the unlisted holder %s:\n%s", sleep, logs)
	}
}

func TestLinuxBrowserCheckRefusesMacSettings(t *testing.T) {
	t.Parallel()
	if _, err := presence.NewBrowserCheck(presence.Browsers{TeamIDs: []string{"EQHXZ8M8AV"}, Executables: []string{"/usr/bin/firefox"}}); err == nil {
		t.Error("Team IDs were accepted on Linux")
	}
	if _, err := presence.NewBrowserCheck(presence.Browsers{}); err == nil {
		t.Error("an empty list was accepted: the check would refuse everything silently")
	}
	if presence.BrowserCheckDefault {
		t.Error("the check is on by default on Linux, where it needs a list")
	}
}

// A program in a mount namespace of its own (which any user may make, with
// a user namespace) can sit at a listed browser's path there, and its
// /proc/<pid>/exe then names that path: the check compares the files
// themselves, and refuses it.
func TestLinuxBrowserCheckAnotherFileAtTheListedPath(t *testing.T) {
	t.Parallel()
	_, bashExe := lookBash(t)
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("no unshare")
	}
	if out, err := exec.Command(unshare, "-Urm", "true").CombinedOutput(); err != nil {
		t.Skipf("no user and mount namespaces here: %v %s", err, out)
	}
	// The listed "browser": a copy of sleep, which never connects.
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep")
	}
	listed := filepath.Join(t.TempDir(), "browser")
	b, err := os.ReadFile(sleep)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(listed, b, 0o755); err != nil {
		t.Fatal(err)
	}
	a := start(t, func(o *presence.Options) { o.Peer = browserCheck(t, listed) })
	c := pp.NewChallenge()
	u, _ := url.Parse(a.url(c))
	fetch := fmt.Sprintf(`exec 3<>/dev/tcp/127.0.0.1/%d
printf '%%s' "$REQUEST" >&3
while IFS= read -r line <&3; do printf '%%s\n' "$line"; done`, a.srv.Addr().Port())
	// In its own namespaces, bash is mounted over the listed path and run
	// from there.
	cmd := exec.Command(unshare, "-Urm", bashExe, "-c", `mount --bind "$1" "$2" && exec "$2" -c "$3"`, "bash", bashExe, listed, fetch)
	cmd.Env = append(os.Environ(), fmt.Sprintf("REQUEST=GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", u.RequestURI(), u.Host))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if !strings.HasPrefix(out.String(), "HTTP/1.1 403 ") || strings.Contains(out.String(), "Location:") {
		t.Fatalf("another program at the listed path got:\n%s\n%s", out.String(), a.logs.String())
	}
	if logs := a.logs.String(); !strings.Contains(logs, "reason=peer_not_browser") || !strings.Contains(logs, "runs another file than "+listed) {
		t.Fatalf("log does not say the file differs:\n%s", logs)
	}
}
