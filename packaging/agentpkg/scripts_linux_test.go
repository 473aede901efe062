package agentpkg

import (
	"bytes"
	"compress/gzip"
	"debug/macho"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	gxar "github.com/blacktop/go-macho/pkg/xar"
	"github.com/clearance/clearance/agent/service"
	"github.com/clearance/clearance/internal/testkit"
	"github.com/clearance/clearance/packaging/bom"
	"github.com/groob/plist"
)

// Other users of the sandbox's Mac, as Homebrew on an Intel Mac leaves them.
const (
	brewUID  = 501
	adminGID = 80
)

// oldAgentPath is where packages before the root-owned directory put the
// binary launchd runs.
const oldAgentPath = "/usr/local/bin/clearance-agent"

// launchctlStandIn keeps the state of com.clearance.agent as launchd
// would: loaded or not, refusing plists others can write, and recording
// which binary it started and its cksum(1).
const launchctlStandIn = `#!/bin/sh
S=/sandbox/launchd
echo "launchctl $*" >>/sandbox/calls
case "$1" in
print)
	[ -f $S/loaded.plist ] ;;
bootout)
	if [ ! -f $S/loaded.plist ]; then
		echo "Boot-out failed: 3: No such process" >&2
		exit 3
	fi
	/bin/rm -f $S/loaded.plist $S/started ;;
enable) ;;
bootstrap)
	if [ -f $S/loaded.plist ]; then
		echo "Bootstrap failed: 37: Operation already in progress" >&2
		exit 37
	fi
	if [ -z "$(/usr/bin/find "$3" -maxdepth 0 -type f -user root ! -perm -020 ! -perm -002)" ]; then
		echo "Bootstrap failed: 5: Input/output error" >&2
		exit 5
	fi
	/bin/cp "$3" $S/loaded.plist
	prog=$(/usr/bin/sed -n '/<key>ProgramArguments<\/key>/{n;n;s/.*<string>\(.*\)<\/string>.*/\1/p;}' "$3")
	if [ -f "$prog" ]; then
		echo "$prog $(/usr/bin/cksum <"$prog")" >$S/started
	else
		echo "$prog missing" >$S/started
	fi ;;
*)
	echo "launchctl stand-in: unexpected $*" >&2
	exit 64 ;;
esac
`

// pkgutilStandIn answers --files and --forget from /sandbox/receipts.
const pkgutilStandIn = `#!/bin/sh
echo "pkgutil $*" >>/sandbox/calls
R=/sandbox/receipts/$2
case "$1" in
--files)
	[ -f "$R" ] || { echo "No receipt for '$2' found at '/'." >&2; exit 1; }
	/bin/cat "$R" ;;
--forget)
	[ -f "$R" ] || { echo "No receipt for '$2' found at '/'." >&2; exit 1; }
	/bin/rm -f "$R"
	echo "Forgetting package '$2' on '/'." ;;
*)
	echo "pkgutil stand-in: unexpected $*" >&2
	exit 64 ;;
esac
`

// plistBuddyStandIn answers PlistBuddy's -c "Print :KEY" FILE for a
// string on the line of its key, as the sandboxes' plists hold them.
const plistBuddyStandIn = `#!/bin/sh
echo "PlistBuddy $*" >>/sandbox/calls
key=${2#Print :}
[ -f "$3" ] || { echo "File Doesn't Exist, Will Create: $3" >&2; exit 1; }
v=$(/usr/bin/sed -n "s#.*<key>$key</key><string>\\(.*\\)</string>.*#\\1#p" "$3")
[ -n "$v" ] || { echo "Print: Entry, \":$key\", Does Not Exist" >&2; exit 1; }
echo "$v"
`

// macTools are the commands the scripts and stand-ins call, at their macOS
// paths, and the program here that plays each.
var macTools = map[string]string{
	"/bin/cat":          "cat",
	"/bin/chmod":        "chmod",
	"/bin/cp":           "cp",
	"/bin/ln":           "ln",
	"/bin/ls":           "ls",
	"/bin/mkdir":        "mkdir",
	"/bin/rm":           "rm",
	"/bin/rmdir":        "rmdir",
	"/bin/sleep":        "sleep",
	"/usr/bin/cksum":    "cksum",
	"/usr/bin/cpio":     "cpio",
	"/usr/bin/find":     "find",
	"/usr/bin/grep":     "grep",
	"/usr/bin/id":       "id",
	"/usr/bin/pkill":    "pkill",
	"/usr/bin/readlink": "readlink",
	"/usr/bin/sed":      "sed",
	"/usr/sbin/chown":   "chown",
}

// libDirs are where this machine's programs find their shared libraries;
// the sandbox mounts them read-only at the same paths.
var libDirs = []string{"/lib", "/lib32", "/lib64", "/libx32", "/usr/lib", "/usr/lib32", "/usr/lib64", "/usr/libx32"}

// pkgParts is the package the sandboxes install: its Payload and Scripts
// as cpio archives, and the payload's paths as a receipt lists them.
var pkgParts struct {
	once             sync.Once
	payload, scripts []byte
	receipt          string
	err              error
}

func packageParts(t *testing.T) (payload, scripts []byte, receipt string) {
	t.Helper()
	cpioBin := testkit.RequireTool(t, "cpio")
	p := &pkgParts
	p.once.Do(func() {
		pkg := build(t, epoch)
		xr, err := gxar.NewReader(bytes.NewReader(pkg), int64(len(pkg)))
		if err != nil {
			p.err = err
			return
		}
		for _, f := range xr.Files {
			var dst *[]byte
			switch f.Name {
			case "clearance-agent.pkg/Payload":
				dst = &p.payload
			case "clearance-agent.pkg/Scripts":
				dst = &p.scripts
			default:
				continue
			}
			rc, err := f.Open()
			if err != nil {
				p.err = err
				return
			}
			zr, err := gzip.NewReader(rc)
			if err == nil {
				*dst, err = io.ReadAll(zr)
			}
			rc.Close()
			if err != nil {
				p.err = fmt.Errorf("%s: %w", f.Name, err)
				return
			}
		}
		if p.payload == nil || p.scripts == nil {
			p.err = errors.New("package lacks Payload or Scripts")
			return
		}
		// The receipt lists the payload's paths without "./".
		cmd := exec.Command(cpioBin, "-it", "--quiet")
		cmd.Stdin = bytes.NewReader(p.payload)
		out, err := cmd.Output()
		if err != nil {
			p.err = fmt.Errorf("cpio -it: %w", err)
			return
		}
		for _, name := range strings.Fields(string(out)) {
			if name != "." {
				p.receipt += strings.TrimPrefix(name, "./") + "\n"
			}
		}
	})
	if p.err != nil {
		t.Fatal(p.err)
	}
	return p.payload, p.scripts, p.receipt
}

// sandbox is one Mac.
type sandbox struct {
	t       *testing.T
	dir     string // the Mac's "/", from here
	userns  bool   // not root here: root inside is this user
	binds   []string
	payload []byte
	receipt string
	// env is added to every command's environment.
	env []string
}

// result is what one command in the sandbox did.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
}

// sandboxOK says whether this machine can run sandboxes at all.
var sandboxOK struct {
	once sync.Once
	err  error
}

// newSandbox is a Mac (newMac) with the package's Scripts unpacked in
// /sandbox/Scripts, ready for install.
func newSandbox(t *testing.T, shell string) *sandbox {
	t.Helper()
	payload, scripts, receipt := packageParts(t)
	s := newMac(t, shell)
	s.payload, s.receipt = payload, receipt
	if r := s.run(scripts, "/bin/sh", "-c", "cd /sandbox/Scripts && exec /usr/bin/cpio -idm --quiet"); r.code != 0 {
		t.Fatalf("extracting Scripts: %v", r)
	}
	return s
}

// newMac is a Mac with shell as /bin/sh, the commands the scripts call and
// the stand-ins, and the uninstall script at /sandbox/uninstall; nothing
// installed.
func newMac(t *testing.T, shell string) *sandbox {
	t.Helper()
	for _, tool := range []string{"unshare", "chroot", "mount"} {
		testkit.Tool(t, tool)
	}
	dir, err := os.MkdirTemp("", "agentpkg-mac-")
	if err != nil {
		t.Fatal(err)
	}
	// Not t.TempDir: a directory is removed only when nothing is mounted
	// below it, so a leaked bind mount can never take this machine's
	// libraries with it.
	t.Cleanup(func() {
		mounts, _ := os.ReadFile("/proc/self/mountinfo")
		if bytes.Contains(mounts, []byte(" "+dir+"/")) {
			t.Errorf("%s still has mounts; not removing it", dir)
			return
		}
		os.RemoveAll(dir)
	})
	s := &sandbox{t: t, dir: dir, userns: os.Geteuid() != 0}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}

	// 1. This machine's libraries, read-only.
	for _, l := range libDirs {
		fi, err := os.Lstat(l)
		switch {
		case err != nil:
			continue
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(l)
			if err != nil {
				t.Fatal(err)
			}
			s.mkdir(filepath.Dir(l), 0o755)
			if err := os.Symlink(target, s.path(l)); err != nil {
				t.Fatal(err)
			}
		case fi.IsDir():
			s.mkdir(l, 0o755)
			s.binds = append(s.binds, l)
		}
	}

	// 2. The commands, at their macOS paths.
	for mac, name := range macTools {
		s.copyTool(mac, testkit.Tool(t, name))
	}
	s.copyTool("/bin/sh", shell)
	s.write("/bin/launchctl", launchctlStandIn, 0o755)
	s.write("/usr/sbin/pkgutil", pkgutilStandIn, 0o755)
	s.write("/usr/libexec/PlistBuddy", plistBuddyStandIn, 0o755)
	s.write("/etc/passwd", "root:x:0:0:System Administrator:/var/root:/bin/sh\n", 0o644)
	s.write("/etc/group", "wheel:x:0:root\nstaff:x:20:\nadmin:x:80:root\n", 0o644)
	s.write("/dev/null", "", 0o666) // a plain file will do: nothing reads it
	s.mkdir("/Library/LaunchDaemons", 0o755)
	s.mkdir("/sandbox/launchd", 0o755)
	s.mkdir("/sandbox/receipts", 0o755)
	s.mkdir("/sandbox/Scripts", 0o755)
	s.write("/sandbox/calls", "", 0o644)
	s.write("/sandbox/uninstall", string(mustRead(t, "scripts/uninstall")), 0o755)

	sandboxOK.once.Do(func() {
		if r := s.run(nil, "/bin/sh", "-c", "exit 0"); r.code != 0 {
			sandboxOK.err = fmt.Errorf("cannot chroot into a mount namespace here: %v", r)
		}
	})
	if sandboxOK.err != nil {
		testkit.Missing(t, "%v", sandboxOK.err)
	}
	return s
}

func mustRead(t *testing.T, name string) []byte {
	t.Helper()
	b, err := Scripts.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// path is where the Mac's path p is, from here.
func (s *sandbox) path(p string) string { return filepath.Join(s.dir, p) }

// mkdir makes the Mac's directory p and its parents, root's, with mode.
func (s *sandbox) mkdir(p string, mode fs.FileMode) {
	s.t.Helper()
	if err := os.MkdirAll(s.path(p), 0o755); err != nil {
		s.t.Fatal(err)
	}
	if err := os.Chmod(s.path(p), mode); err != nil {
		s.t.Fatal(err)
	}
}

// write makes the Mac's file p, root's, with mode.
func (s *sandbox) write(p, data string, mode fs.FileMode) {
	s.t.Helper()
	if err := os.MkdirAll(filepath.Dir(s.path(p)), 0o755); err != nil {
		s.t.Fatal(err)
	}
	if err := os.WriteFile(s.path(p), []byte(data), mode); err != nil {
		s.t.Fatal(err)
	}
	if err := os.Chmod(s.path(p), mode); err != nil {
		s.t.Fatal(err)
	}
}

func (s *sandbox) copyTool(mac, here string) {
	s.t.Helper()
	b, err := os.ReadFile(here)
	if err != nil {
		s.t.Fatal(err)
	}
	s.write(mac, string(b), 0o755)
}

// giveTo makes the Mac's path p belong to another user; only root here can.
func (s *sandbox) giveTo(p string, uid, gid int) {
	s.t.Helper()
	if s.userns {
		s.t.Skip("needs a second user: run the tests as root")
	}
	if err := os.Lchown(s.path(p), uid, gid); err != nil {
		s.t.Fatal(err)
	}
}

// run runs args inside the sandbox as root, with stdin.
func (s *sandbox) run(stdin []byte, args ...string) result {
	s.t.Helper()
	ns := []string{"--mount", "--propagation", "private"}
	if s.userns {
		ns = append([]string{"--user", "--map-root-user"}, ns...)
	}
	const wrap = `set -e
root=$1 n=$2
shift 2
while [ "$n" -gt 0 ]; do
	mount -o bind,ro "$1" "$root$1"
	shift
	n=$((n - 1))
done
exec chroot "$root" "$@"`
	cmdArgs := append(ns, "--", "sh", "-c", wrap, "sh", s.dir, strconv.Itoa(len(s.binds)))
	cmdArgs = append(append(cmdArgs, s.binds...), args...)
	cmd := exec.Command("unshare", cmdArgs...)
	cmd.Env = append([]string{"PATH=/usr/bin:/bin:/usr/sbin:/sbin", "LC_ALL=C"}, s.env...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		s.t.Fatalf("unshare: %v", err)
	}
	return r
}

// install does what Installer does with the package: preinstall, the
// payload (when preinstall succeeded), the receipt, then postinstall.
// beforePost, when set, runs between payload and postinstall.
func (s *sandbox) install(beforePost func()) (pre, post result) {
	s.t.Helper()
	script := func(name string) result {
		return s.run(nil, "/sandbox/Scripts/"+name, "/sandbox/clearance-agent.pkg", "/", "/", "/")
	}
	if pre = script("preinstall"); pre.code != 0 {
		return pre, result{code: -1}
	}
	if r := s.run(s.payload, "/bin/sh", "-c", "cd / && exec /usr/bin/cpio -idmu --quiet"); r.code != 0 {
		s.t.Fatalf("laying out the payload: %v", r)
	}
	s.write("/sandbox/receipts/"+service.Label, s.receipt, 0o644)
	if beforePost != nil {
		beforePost()
	}
	return pre, script("postinstall")
}

func (s *sandbox) uninstall() result {
	s.t.Helper()
	return s.run(nil, "/sandbox/uninstall")
}

// calls returns the launchctl and pkgutil calls so far, and forgets them.
func (s *sandbox) calls() []string {
	s.t.Helper()
	b, err := os.ReadFile(s.path("/sandbox/calls"))
	if err != nil {
		s.t.Fatal(err)
	}
	s.write("/sandbox/calls", "", 0o644)
	if len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// daemon returns the loaded job's ProgramArguments (nil if not loaded) and
// what launchd started.
func (s *sandbox) daemon() (args []string, started string) {
	s.t.Helper()
	b, err := os.ReadFile(s.path("/sandbox/launchd/loaded.plist"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ""
	} else if err != nil {
		s.t.Fatal(err)
	}
	var job struct {
		ProgramArguments []string `plist:"ProgramArguments"`
	}
	if err := plist.Unmarshal(b, &job); err != nil {
		s.t.Fatalf("loaded plist: %v", err)
	}
	st, _ := os.ReadFile(s.path("/sandbox/launchd/started"))
	return job.ProgramArguments, strings.TrimSpace(string(st))
}

// startedOn is what the launchctl stand-in records for starting the file
// at the Mac's path p: its path and cksum(1).
func (s *sandbox) startedOn(p string) string {
	s.t.Helper()
	b, err := os.ReadFile(s.path(p))
	if err != nil {
		s.t.Fatal(err)
	}
	return fmt.Sprintf("%s %d %d", p, bom.Checksum(b), len(b))
}

// node is what a path is: "dir 0755 0:0", "file 0644 501:80",
// "link -> TARGET", or "missing"; 0:0 is root inside the sandbox.
func (s *sandbox) node(p string) string {
	s.t.Helper()
	fi, err := os.Lstat(s.path(p))
	if errors.Is(err, fs.ErrNotExist) {
		return "missing"
	} else if err != nil {
		s.t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	uid, gid := int(st.Uid), int(st.Gid)
	if s.userns && uid == os.Getuid() {
		uid = 0
	}
	if s.userns && gid == os.Getgid() {
		gid = 0
	}
	owner := fmt.Sprintf(" %04o %d:%d", fi.Mode().Perm(), uid, gid)
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		target, _ := os.Readlink(s.path(p))
		return "link -> " + target
	case fi.IsDir():
		return "dir" + owner
	default:
		return "file" + owner
	}
}

// Layouts the cases start from.

// intelHomebrew is /usr/local as Homebrew leaves it on an Intel Mac:
// /usr/local root's, /usr/local/bin the Homebrew user's (root's when the
// sandbox has a single user).
func (s *sandbox) intelHomebrew() {
	s.mkdir("/usr/local/bin", 0o775)
	s.write("/usr/local/bin/brew", "#!/bin/sh\n", 0o755)
	if !s.userns {
		s.giveTo("/usr/local/bin", brewUID, adminGID)
		s.giveTo("/usr/local/bin/brew", brewUID, adminGID)
	}
}

// oldLayout is a Mac with the package from before the root-owned
// directory installed and running: the binary in /usr/local/bin, the plist
// naming it, and its receipt.
func (s *sandbox) oldLayout() {
	s.t.Helper()
	s.write(oldAgentPath, "old agent\n", 0o755)
	pl, err := service.LaunchdPlist()
	if err != nil {
		s.t.Fatal(err)
	}
	old := strings.Replace(string(pl), service.ExecutablePath, oldAgentPath, 1)
	s.write(service.LaunchdPlistPath, old, 0o644)
	s.write("/sandbox/launchd/loaded.plist", old, 0o644)
	s.write("/sandbox/launchd/started", s.startedOn(oldAgentPath), 0o644)
	s.write("/sandbox/receipts/"+service.Label,
		"Library\nLibrary/LaunchDaemons\nLibrary/LaunchDaemons/com.clearance.agent.plist\nusr\nusr/local\nusr/local/bin\nusr/local/bin/clearance-agent\n", 0o644)
}

// shells are the /bin/sh the scripts are run with: macOS's is bash in
// POSIX mode; dash holds them to POSIX.
func shells(t *testing.T) map[string]string {
	out := map[string]string{}
	for _, name := range []string{"dash", "bash"} {
		if p, err := exec.LookPath(name); err == nil {
			out[name] = p
		}
	}
	if len(out) == 0 {
		testkit.Missing(t, "neither dash nor bash is installed")
	}
	return out
}

// wantInstalled checks what a good install leaves: the root-owned
// directory and binary, the plist, the link for people, and launchd
// running the new binary from the new path.
func wantInstalled(t *testing.T, s *sandbox) {
	t.Helper()
	for p, want := range map[string]string{
		"/usr/local/clearance":     "dir 0755 0:0",
		"/usr/local/clearance/bin": "dir 0755 0:0",
		service.ExecutablePath:     "file 0755 0:0",
		service.LaunchdPlistPath:   "file 0644 0:0",
		LinkPath:                   "link -> " + service.ExecutablePath,
	} {
		if got := s.node(p); got != want {
			t.Errorf("%s: %s, want %s", p, got, want)
		}
	}
	if f, err := macho.OpenFat(s.path(service.ExecutablePath)); err != nil {
		t.Errorf("%s is not the package's universal binary: %v", service.ExecutablePath, err)
	} else {
		f.Close()
	}
	args, started := s.daemon()
	if strings.Join(args, " ") != service.ExecutablePath+" run" {
		t.Errorf("launchd runs %q, want %q", args, service.ExecutablePath+" run")
	}
	if want := s.startedOn(service.ExecutablePath); started != want {
		t.Errorf("launchd started %q, want %q", started, want)
	}
}

// TestScriptsInSandbox runs the package's scripts, unchanged, as Installer
// runs them, on a Mac of its own: a directory laid out like a startup disk
// that each command chroot(2)s into, in a mount namespace of its own. The
// commands the scripts call by absolute path are this machine's (dash or
// bash as /bin/sh, coreutils, find), except launchctl and pkgutil,
// stand-ins that record each call and keep one launch daemon's state and
// one receipt under /sandbox.
//
// Run as root, a sandbox can hold directories of other users (the Homebrew
// user, an attacker); otherwise it runs in a user namespace where this user
// is root, and the cases that need a second user are skipped.
func TestScriptsInSandbox(t *testing.T) {
	for shName, sh := range shells(t) {
		t.Run(shName, func(t *testing.T) {
			t.Parallel()
			testScripts(t, sh)
		})
	}
}

func testScripts(t *testing.T, sh string) {
	t.Run("fresh install on a Mac without /usr/local", func(t *testing.T) {
		t.Parallel()
		s := newSandbox(t, sh)
		pre, post := s.install(nil)
		if pre.code != 0 || post.code != 0 {
			t.Fatalf("install failed:\npreinstall %v\npostinstall %v", pre, post)
		}
		wantInstalled(t, s)
		// Only the directories the payload holds, and /usr/local/bin for
		// the link, made root's.
		for p, want := range map[string]string{"/usr/local": "dir 0755 0:0", "/usr/local/bin": "dir 0755 0:0"} {
			if got := s.node(p); got != want {
				t.Errorf("%s: %s, want %s", p, got, want)
			}
		}
		wantCalls(t, s.calls(), "launchctl print system/com.clearance.agent", "launchctl bootout system/com.clearance.agent",
			"launchctl enable system/com.clearance.agent", "launchctl bootstrap system /Library/LaunchDaemons/com.clearance.agent.plist")
	})

	t.Run("upgrade from the binary in /usr/local/bin", func(t *testing.T) {
		t.Parallel()
		s := newSandbox(t, sh)
		s.intelHomebrew()
		s.oldLayout()
		brewDir := s.node("/usr/local/bin")
		var afterPre []string
		pre, post := s.install(func() {
			afterPre = s.calls()
			// Installer has replaced the plist: it names the new path.
			if b, _ := os.ReadFile(s.path(service.LaunchdPlistPath)); !bytes.Contains(b, []byte(service.ExecutablePath)) {
				t.Errorf("payload left the old plist:\n%s", b)
			}
		})
		if pre.code != 0 || post.code != 0 {
			t.Fatalf("install failed:\npreinstall %v\npostinstall %v", pre, post)
		}
		// preinstall stopped the old agent before its files were replaced.
		wantCalls(t, afterPre, "launchctl print system/com.clearance.agent", "launchctl bootout system/com.clearance.agent")
		// The old binary is now the link; launchd runs the new one.
		wantInstalled(t, s)
		wantCalls(t, s.calls(), "launchctl bootout system/com.clearance.agent",
			"launchctl enable system/com.clearance.agent", "launchctl bootstrap system /Library/LaunchDaemons/com.clearance.agent.plist")
		// The Homebrew user's directory and files are as they were.
		if got := s.node("/usr/local/bin"); got != brewDir {
			t.Errorf("/usr/local/bin: %s, was %s", got, brewDir)
		}
		if got := s.node("/usr/local/bin/brew"); !strings.HasPrefix(got, "file 0755") {
			t.Errorf("/usr/local/bin/brew: %s", got)
		}

		// Installing again (a reinstall, or the next upgrade) ends the same.
		pre, post = s.install(nil)
		if pre.code != 0 || post.code != 0 {
			t.Fatalf("reinstall failed:\npreinstall %v\npostinstall %v", pre, post)
		}
		wantInstalled(t, s)
	})

	t.Run("a link or file of someone else's in /usr/local/bin is replaced", func(t *testing.T) {
		t.Parallel()
		s := newSandbox(t, sh)
		s.intelHomebrew()
		if err := os.Symlink("/usr/local/Cellar/evil/bin/evil", s.path(LinkPath)); err != nil {
			t.Fatal(err)
		}
		if pre, post := s.install(nil); pre.code != 0 || post.code != 0 {
			t.Fatalf("install failed:\npreinstall %v\npostinstall %v", pre, post)
		}
		wantInstalled(t, s)
	})

	t.Run("a directory in the link's place is left alone", func(t *testing.T) {
		t.Parallel()
		s := newSandbox(t, sh)
		s.intelHomebrew()
		s.mkdir(LinkPath, 0o755)
		pre, post := s.install(nil)
		if pre.code != 0 || post.code != 0 {
			t.Fatalf("install failed:\npreinstall %v\npostinstall %v", pre, post)
		}
		if !strings.Contains(post.stderr, LinkPath+" is a directory") {
			t.Errorf("postinstall does not say why there is no link: %v", post)
		}
		if got := s.node(LinkPath); got != "dir 0755 0:0" {
			t.Errorf("%s: %s", LinkPath, got)
		}
		if entries, _ := os.ReadDir(s.path(LinkPath)); len(entries) != 0 {
			t.Errorf("postinstall wrote into %s: %v", LinkPath, entries)
		}
		if args, _ := s.daemon(); len(args) == 0 || args[0] != service.ExecutablePath {
			t.Errorf("launchd runs %q", args)
		}
	})

	// Directories that someone other than root controls: preinstall refuses
	// before anything is written or stopped, and the old agent keeps running.
	refusals := []struct {
		name, path string
		setup      func(s *sandbox)
	}{
		{"/usr/local/clearance made by another user", "/usr/local/clearance", func(s *sandbox) {
			s.mkdir("/usr/local/clearance/bin", 0o755)
			s.write(service.ExecutablePath, "#!/bin/sh\n", 0o755)
			s.giveTo("/usr/local/clearance", brewUID, adminGID)
		}},
		{"/usr/local/clearance writable by everyone", "/usr/local/clearance", func(s *sandbox) {
			s.mkdir("/usr/local/clearance", 0o1777)
		}},
		{"/usr/local/clearance writable by its group", "/usr/local/clearance", func(s *sandbox) {
			s.mkdir("/usr/local/clearance", 0o775)
		}},
		{"/usr/local/clearance a link", "/usr/local/clearance", func(s *sandbox) {
			s.mkdir("/private/tmp/elsewhere/bin", 0o755)
			if err := os.Symlink("/private/tmp/elsewhere", s.path("/usr/local/clearance")); err != nil {
				s.t.Fatal(err)
			}
		}},
		{"/usr/local/clearance a file", "/usr/local/clearance", func(s *sandbox) {
			s.write("/usr/local/clearance", "", 0o644)
		}},
		{"/usr/local/clearance/bin made by another user", "/usr/local/clearance/bin", func(s *sandbox) {
			s.mkdir("/usr/local/clearance/bin", 0o755)
			s.giveTo("/usr/local/clearance/bin", brewUID, adminGID)
		}},
		{"/usr/local another user's (as old Homebrew installs left it)", "/usr/local", func(s *sandbox) {
			s.giveTo("/usr/local", brewUID, adminGID)
		}},
		{"/usr/local writable by its group", "/usr/local", func(s *sandbox) {
			s.mkdir("/usr/local", 0o775)
		}},
	}
	for _, tt := range refusals {
		t.Run("refuses "+tt.name, func(t *testing.T) {
			t.Parallel()
			s := newSandbox(t, sh)
			s.intelHomebrew()
			s.oldLayout()
			tt.setup(s)
			s.calls()
			before := s.node(tt.path)
			pre, _ := s.install(nil)
			if pre.code == 0 {
				t.Fatalf("preinstall went ahead: %v", pre)
			}
			if !strings.Contains(pre.stderr, "refusing to install: "+tt.path+" must be") {
				t.Errorf("preinstall does not say why: %v", pre)
			}
			if got := s.node(tt.path); got != before {
				t.Errorf("%s: %s, was %s", tt.path, got, before)
			}
			wantCalls(t, s.calls())
			if args, _ := s.daemon(); len(args) == 0 || args[0] != oldAgentPath {
				t.Errorf("the running agent was touched: launchd runs %q", args)
			}
		})
	}

	// Should a directory be opened up between preinstall and postinstall,
	// postinstall does not start the agent from it.
	postRefusals := []struct {
		name, why string
		change    func(s *sandbox)
	}{
		{"its directory became writable", "/usr/local/clearance/bin must be", func(s *sandbox) {
			s.mkdir("/usr/local/clearance/bin", 0o777)
		}},
		{"its binary became a link", service.ExecutablePath + " is not a regular file", func(s *sandbox) {
			os.Remove(s.path(service.ExecutablePath))
			os.Symlink("/private/tmp/evil", s.path(service.ExecutablePath))
		}},
	}
	for _, tt := range postRefusals {
		t.Run("postinstall does not start the agent when "+tt.name, func(t *testing.T) {
			t.Parallel()
			s := newSandbox(t, sh)
			_, post := s.install(func() {
				tt.change(s)
				s.calls()
			})
			if post.code == 0 || !strings.Contains(post.stderr, "not starting: "+tt.why) {
				t.Errorf("postinstall: %v", post)
			}
			wantCalls(t, s.calls())
		})
	}

	t.Run("uninstall", func(t *testing.T) {
		t.Parallel()
		s := newSandbox(t, sh)
		s.intelHomebrew()
		if pre, post := s.install(nil); pre.code != 0 || post.code != 0 {
			t.Fatalf("install failed:\npreinstall %v\npostinstall %v", pre, post)
		}
		s.calls()
		if got := s.node("/private" + service.NewsyslogPath); !strings.HasPrefix(got, "file") {
			t.Fatalf("the install left no newsyslog entry: %s", got)
		}
		if r := s.uninstall(); r.code != 0 || r.stdout != "clearance-agent removed\n" {
			t.Fatalf("uninstall: %v", r)
		}
		for _, p := range []string{service.LaunchdPlistPath, service.ExecutablePath, "/usr/local/clearance", LinkPath, "/private" + service.NewsyslogPath} {
			if got := s.node(p); got != "missing" {
				t.Errorf("%s left behind: %s", p, got)
			}
		}
		if got := s.node("/usr/local/bin/brew"); !strings.HasPrefix(got, "file") {
			t.Errorf("/usr/local/bin/brew: %s", got)
		}
		if args, _ := s.daemon(); args != nil {
			t.Errorf("launchd still has the job: %q", args)
		}
		wantCalls(t, s.calls(), "launchctl bootout system/com.clearance.agent", "pkgutil --forget com.clearance.agent")
	})

	// The record of the last settings that ran holds the enroll secret:
	// uninstall removes it from the default state dir and from the one
	// the profile names, whatever that name looks like, and nothing about
	// it stops the rest of the uninstall. A relative StateDir names no
	// place the script can know (launchd runs the agent in /, the script
	// runs wherever sudo was typed): it says so and touches nothing there.
	records := []struct {
		name, stateDir string
		// removed: the record in the profile's state dir goes.
		removed bool
		// stuck puts a directory where the record is, which rm cannot remove.
		stuck bool
		warn  string
	}{
		{"an absolute StateDir", "/private/var/clearance", true, false, ""},
		{"a StateDir with spaces", "/private/var/clearance state", true, false, ""},
		{"a StateDir that reads as an option", "-clearance", false, false,
			`StateDir "-clearance" in the profile is not an absolute path`},
		{"a relative StateDir", "var/clearance", false, false,
			`StateDir "var/clearance" in the profile is not an absolute path`},
		{"a record it cannot remove", "/private/var/clearance", false, true,
			"could not remove /private/var/clearance/last-settings.json"},
	}
	for _, tt := range records {
		t.Run("uninstall removes the last settings that ran, not the state dir, with "+tt.name, func(t *testing.T) {
			t.Parallel()
			s := newSandbox(t, sh)
			if pre, post := s.install(nil); pre.code != 0 || post.code != 0 {
				t.Fatalf("install failed:\npreinstall %v\npostinstall %v", pre, post)
			}
			// The default state dir, and the one the profile names (where
			// an agent run by launchd, in /, kept it when it is relative).
			named := "/" + strings.TrimPrefix(tt.stateDir, "/")
			for _, d := range []string{"/var/db/clearance", named} {
				s.mkdir(d, 0o700)
				s.write(d+"/last-settings.json", `{"settings":{"EnrollSecret":{"value":"hunter2"}}}`, 0o600)
				s.write(d+"/device.key", "key\n", 0o600)
			}
			// A local plist an admin wrote: theirs to delete, whatever it holds.
			s.write("/var/db/clearance/com.clearance.agent.plist",
				"<plist version=\"1.0\"><dict>\n<key>EnrollSecret</key><string>hunter2</string>\n</dict></plist>\n", 0o600)
			if tt.stuck {
				os.Remove(s.path(named + "/last-settings.json"))
				s.write(named+"/last-settings.json/x", "", 0o600)
			}
			s.write("/Library/Managed Preferences/com.clearance.agent.plist",
				"<plist version=\"1.0\"><dict>\n<key>StateDir</key><string>"+tt.stateDir+"</string>\n</dict></plist>\n", 0o644)
			s.calls()
			r := s.uninstall()
			if r.code != 0 || r.stdout != "clearance-agent removed\n" {
				t.Fatalf("uninstall: %v", r)
			}
			if tt.warn == "" && r.stderr != "" || !strings.Contains(r.stderr, tt.warn) {
				t.Errorf("uninstall says %q, want %q", r.stderr, tt.warn)
			}
			// The rest of the uninstall went ahead.
			for _, p := range []string{service.LaunchdPlistPath, service.ExecutablePath, LinkPath, "/sandbox/receipts/" + service.Label} {
				if got := s.node(p); got != "missing" {
					t.Errorf("%s left behind: %s", p, got)
				}
			}
			if got := s.node("/var/db/clearance/last-settings.json"); got != "missing" {
				t.Errorf("/var/db/clearance/last-settings.json, with the enroll secret, left behind: %s", got)
			}
			if got := s.node(named + "/last-settings.json"); (got == "missing") != tt.removed {
				t.Errorf("%s/last-settings.json: %s; removed should be %v", named, got, tt.removed)
			}
			for _, p := range []string{"/var/db/clearance/device.key", named + "/device.key", "/var/db/clearance/com.clearance.agent.plist"} {
				if got := s.node(p); got != "file 0600 0:0" {
					t.Errorf("%s: %s; the rest of the state dir stays", p, got)
				}
			}
			wantCalls(t, s.calls(), "launchctl bootout system/com.clearance.agent",
				"PlistBuddy -c Print :StateDir /Library/Managed Preferences/com.clearance.agent.plist", "pkgutil --forget com.clearance.agent")
		})
	}

	keeps := []struct {
		name  string
		setup func(s *sandbox)
		want  string
	}{
		{"uninstall keeps a link that is not ours", func(s *sandbox) {
			os.Remove(s.path(LinkPath))
			os.Symlink("/usr/local/Cellar/other/bin/clearance-agent", s.path(LinkPath))
		}, "link -> /usr/local/Cellar/other/bin/clearance-agent"},
		{"uninstall keeps a file the receipt does not list", func(s *sandbox) {
			os.Remove(s.path(LinkPath))
			s.write(LinkPath, "someone else's\n", 0o755)
		}, "file 0755 0:0"},
	}
	for _, tt := range keeps {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newSandbox(t, sh)
			if pre, post := s.install(nil); pre.code != 0 || post.code != 0 {
				t.Fatalf("install failed:\npreinstall %v\npostinstall %v", pre, post)
			}
			tt.setup(s)
			if r := s.uninstall(); r.code != 0 {
				t.Fatalf("uninstall: %v", r)
			}
			if got := s.node(LinkPath); got != tt.want {
				t.Errorf("%s: %s, want %s", LinkPath, got, tt.want)
			}
			if got := s.node(service.ExecutablePath); got != "missing" {
				t.Errorf("%s left behind: %s", service.ExecutablePath, got)
			}
		})
	}

	t.Run("uninstall on a Mac never upgraded removes the old binary", func(t *testing.T) {
		t.Parallel()
		s := newSandbox(t, sh)
		s.intelHomebrew()
		s.oldLayout()
		if r := s.uninstall(); r.code != 0 {
			t.Fatalf("uninstall: %v", r)
		}
		for _, p := range []string{service.LaunchdPlistPath, oldAgentPath} {
			if got := s.node(p); got != "missing" {
				t.Errorf("%s left behind: %s", p, got)
			}
		}
	})
}

// wantCalls compares the stand-ins' calls with want, in order.
func wantCalls(t *testing.T, got []string, want ...string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
