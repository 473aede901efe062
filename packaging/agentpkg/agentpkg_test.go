package agentpkg

import (
	"bytes"
	"compress/gzip"
	"crypto/sha1"
	"debug/macho"
	"encoding/xml"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gxar "github.com/blacktop/go-macho/pkg/xar"
	"github.com/clearance/clearance/agent/service"
	"github.com/clearance/clearance/internal/testkit"
	"github.com/clearance/clearance/packaging/internal/agentbuild"
	"github.com/clearance/clearance/packaging/internal/bomread"
	"github.com/groob/plist"
)

var epoch = time.Unix(1700000000, 0).UTC()

var (
	binsOnce         sync.Once
	binArm, binAmd64 []byte
	binsErr          error
	binsDir          string
)

// agents cross-compiles the two darwin agents once per test binary.
func agents(t *testing.T) ([]byte, []byte) {
	t.Helper()
	binsOnce.Do(func() {
		binsDir, binsErr = os.MkdirTemp("", "agentpkg-test-")
		if binsErr == nil {
			binArm, binAmd64, binsErr = agentbuild.BuildBoth("1.2.3", "", binsDir)
		}
	})
	if binsErr != nil {
		t.Fatal(binsErr)
	}
	return binArm, binAmd64
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binsDir != "" {
		os.RemoveAll(binsDir)
	}
	os.Exit(code)
}

func build(t *testing.T, mtime time.Time) []byte {
	t.Helper()
	arm, amd := agents(t)
	pkg, err := Build(Config{Version: "1.2.3", AgentARM64: arm, AgentAMD64: amd, ModTime: mtime})
	if err != nil {
		t.Fatal(err)
	}
	return pkg
}

func TestReproducible(t *testing.T) {
	a, b := build(t, epoch), build(t, epoch)
	if !bytes.Equal(a, b) {
		t.Fatal("two builds with the same SOURCE_DATE_EPOCH differ")
	}
	if bytes.Equal(a, build(t, epoch.Add(time.Second))) {
		t.Error("a different SOURCE_DATE_EPOCH gave the same bytes: timestamps are not taken from it")
	}
}

// payloadLine is what cpio -itvn shows for one entry.
type payloadLine struct {
	mode, uid, gid, name string
	size                 int
}

func TestPackageOpensWithIndependentReaders(t *testing.T) {
	bsdtar := testkit.RequireTool(t, "bsdtar")
	cpioBin := testkit.RequireTool(t, "cpio")
	cksum := testkit.RequireTool(t, "cksum")
	pkg := build(t, epoch)
	dir := t.TempDir()
	pkgPath := filepath.Join(dir, FileName("1.2.3"))
	if err := os.WriteFile(pkgPath, pkg, 0o644); err != nil {
		t.Fatal(err)
	}

	// 1. bsdtar lists exactly the product's members and extracts them.
	out, err := exec.Command(bsdtar, "-tf", pkgPath).CombinedOutput()
	if err != nil {
		t.Fatalf("bsdtar -tf: %v\n%s", err, out)
	}
	wantMembers := []string{
		"Distribution", "clearance-agent.pkg", "clearance-agent.pkg/Bom", "clearance-agent.pkg/PackageInfo",
		"clearance-agent.pkg/Payload", "clearance-agent.pkg/Scripts",
	}
	var members []string
	for _, l := range strings.Fields(string(out)) {
		members = append(members, strings.TrimSuffix(l, "/"))
	}
	sort.Strings(members)
	if strings.Join(members, " ") != strings.Join(wantMembers, " ") {
		t.Fatalf("bsdtar lists %v, want %v", members, wantMembers)
	}
	xdir := filepath.Join(dir, "xar")
	os.Mkdir(xdir, 0o755)
	if out, err := exec.Command(bsdtar, "-xf", pkgPath, "-C", xdir).CombinedOutput(); err != nil {
		t.Fatalf("bsdtar -xf: %v\n%s", err, out)
	}
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(xdir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	// 2. An independent Go xar reader verifies the TOC checksum and every
	//    file's archived and extracted checksums, and agrees with bsdtar.
	xr, err := gxar.NewReader(bytes.NewReader(pkg), int64(len(pkg)))
	if err != nil {
		t.Fatalf("go-macho xar reader: %v", err)
	}
	if len(xr.Files) != len(wantMembers)-1 {
		t.Errorf("xar reader sees %d files, want %d", len(xr.Files), len(wantMembers)-1)
	}
	for _, f := range xr.Files {
		if !f.VerifyChecksum() {
			t.Errorf("%s: archived checksum does not verify", f.Name)
		}
		rc, err := f.Open()
		if err != nil {
			t.Fatalf("%s: %v", f.Name, err)
		}
		data, _ := io.ReadAll(rc)
		rc.Close()
		if sum := sha1.Sum(data); !bytes.Equal(sum[:], f.ExtractedChecksum.Sum) {
			t.Errorf("%s: extracted checksum does not match", f.Name)
		}
		if !bytes.Equal(data, read(f.Name)) {
			t.Errorf("%s: go-macho and bsdtar extract different bytes", f.Name)
		}
		if f.Info.User != "root" || f.Info.Group != "wheel" || f.Info.Mtime != epoch.Unix() {
			t.Errorf("%s: %s:%s mtime %d", f.Name, f.Info.User, f.Info.Group, f.Info.Mtime)
		}
	}

	// 3. The Payload is a gzip'd cpio with exactly our files, owners, modes.
	wantPlist, err := service.LaunchdPlist()
	if err != nil {
		t.Fatal(err)
	}
	payload := gunzip(t, read("clearance-agent.pkg/Payload"))
	lines := cpioList(t, cpioBin, payload)
	dirLine := func(name string) payloadLine { return payloadLine{"drwxr-xr-x", "0", "0", name, 0} }
	arm, amd := agents(t)
	want := []payloadLine{
		dirLine("."),
		dirLine("./Library"),
		dirLine("./Library/LaunchDaemons"),
		{"-rw-r--r--", "0", "0", "./Library/LaunchDaemons/com.clearance.agent.plist", len(wantPlist)},
		// The log's rotation, in the directory /etc links to: a
		// payload's ./etc would be a directory where macOS has a link.
		dirLine("./private"),
		dirLine("./private/etc"),
		dirLine("./private/etc/newsyslog.d"),
		{"-rw-r--r--", "0", "0", "./private/etc/newsyslog.d/com.clearance.agent.conf", len(service.NewsyslogConf())},
		dirLine("./usr"),
		dirLine("./usr/local"),
		// The binary launchd runs as root, in directories the package
		// makes root's. Nothing in /usr/local/bin, which may be another
		// user's: postinstall links the binary there.
		dirLine("./usr/local/clearance"),
		dirLine("./usr/local/clearance/bin"),
		{"-rwxr-xr-x", "0", "0", "./usr/local/clearance/bin/clearance-agent", -1},
	}
	if len(lines) != len(want) {
		t.Fatalf("payload holds %d entries, want %d: %+v", len(lines), len(want), lines)
	}
	for i := range want {
		if want[i].size == -1 {
			want[i].size = lines[i].size // the fat size is checked below
		}
		if lines[i] != want[i] {
			t.Errorf("payload entry %d: %+v, want %+v", i, lines[i], want[i])
		}
	}
	pdir := filepath.Join(dir, "payload")
	cpioExtract(t, cpioBin, payload, pdir)
	gotPlist, _ := os.ReadFile(filepath.Join(pdir, service.LaunchdPlistPath))
	if !bytes.Equal(gotPlist, wantPlist) {
		t.Errorf("installed plist differs from service.LaunchdPlist():\n%s", gotPlist)
	}
	if got, _ := os.ReadFile(filepath.Join(pdir, "private", service.NewsyslogPath)); !bytes.Equal(got, service.NewsyslogConf()) {
		t.Errorf("installed newsyslog entry differs from service.NewsyslogConf():\n%s", got)
	}
	agentPath := filepath.Join(pdir, service.ExecutablePath)
	checkFat(t, agentPath, arm, amd)
	var job struct {
		ProgramArguments []string `plist:"ProgramArguments"`
		ProcessType      string   `plist:"ProcessType"`
	}
	if err := plist.Unmarshal(gotPlist, &job); err != nil {
		t.Fatalf("installed plist: %v", err)
	}
	if got, want := strings.Join(job.ProgramArguments, " "), "/usr/local/clearance/bin/clearance-agent run"; got != want {
		t.Errorf("installed plist runs %q, want %q", got, want)
	}
	// launchd throttles Background jobs; the agent answers sign-ins.
	if job.ProcessType != "Standard" {
		t.Errorf("installed plist's ProcessType %q, want Standard", job.ProcessType)
	}

	// 4. Scripts: executable shell scripts that parse.
	sdir := filepath.Join(dir, "scripts")
	scripts := gunzip(t, read("clearance-agent.pkg/Scripts"))
	var names []string
	for _, l := range cpioList(t, cpioBin, scripts) {
		names = append(names, l.name)
		if l.name != "." && (l.mode != "-rwxr-xr-x" || l.uid != "0" || l.gid != "0") {
			t.Errorf("script %s: %s %s:%s, want -rwxr-xr-x 0:0", l.name, l.mode, l.uid, l.gid)
		}
	}
	if strings.Join(names, " ") != ". ./postinstall ./preinstall" {
		t.Errorf("Scripts holds %v", names)
	}
	cpioExtract(t, cpioBin, scripts, sdir)
	for _, s := range []string{"preinstall", "postinstall"} {
		p := filepath.Join(sdir, s)
		shCheck(t, p)
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm()&0o111 == 0 {
			t.Errorf("%s not executable after extraction (%v)", s, err)
		}
	}

	// 5. The Bom lists the payload's paths, modes, owners and sizes, and
	//    checksums that match cksum(1) of the extracted files.
	paths, err := bomread.Read(read("clearance-agent.pkg/Bom"))
	if err != nil {
		t.Fatalf("bom: %v", err)
	}
	inBom := map[string]bomread.Path{}
	for _, p := range paths {
		inBom[p.Path] = p
	}
	if len(paths) != len(lines) {
		t.Errorf("bom has %d paths, payload %d", len(paths), len(lines))
	}
	for _, l := range lines {
		p, ok := inBom[l.name]
		if !ok {
			t.Errorf("bom lacks %s", l.name)
			continue
		}
		if got := fs.FileMode(p.Mode & 0o777).String()[1:]; got != l.mode[1:] {
			t.Errorf("%s: bom mode %s, payload %s", l.name, got, l.mode)
		}
		if isDir := p.Mode&0o170000 == 0o040000; isDir != (l.mode[0] == 'd') {
			t.Errorf("%s: bom mode %o and payload type %c disagree", l.name, p.Mode, l.mode[0])
		}
		if strconv.Itoa(int(p.UID)) != l.uid || strconv.Itoa(int(p.GID)) != l.gid || int(p.Size) != l.size {
			t.Errorf("%s: bom %d:%d size %d, payload %s:%s size %d", l.name, p.UID, p.GID, p.Size, l.uid, l.gid, l.size)
		}
		if p.ModTime != uint32(epoch.Unix()) {
			t.Errorf("%s: bom mtime %d", l.name, p.ModTime)
		}
		if l.mode[0] == '-' {
			out, err := exec.Command(cksum, filepath.Join(pdir, l.name)).Output()
			if err != nil {
				t.Fatal(err)
			}
			if want := strings.Fields(string(out))[0]; strconv.FormatUint(uint64(p.Checksum), 10) != want {
				t.Errorf("%s: bom checksum %d, cksum says %s", l.name, p.Checksum, want)
			}
		}
	}

	// 6. Distribution and PackageInfo say what Installer needs.
	var dist struct {
		Title   string `xml:"title"`
		Options struct {
			Host string `xml:"hostArchitectures,attr"`
		} `xml:"options"`
		OSVersion struct {
			Min string `xml:"min,attr"`
		} `xml:"volume-check>allowed-os-versions>os-version"`
		Choices []struct {
			ID   string `xml:"id,attr"`
			Refs []struct {
				ID string `xml:"id,attr"`
			} `xml:"pkg-ref"`
		} `xml:"choice"`
		PkgRefs []struct {
			ID      string `xml:"id,attr"`
			Version string `xml:"version,attr"`
			Path    string `xml:",chardata"`
		} `xml:"pkg-ref"`
	}
	if err := xml.Unmarshal(read("Distribution"), &dist); err != nil {
		t.Fatalf("Distribution: %v", err)
	}
	if dist.Title != "Clearance agent" || dist.Options.Host != "x86_64,arm64" || dist.OSVersion.Min != DefaultMinOSVersion {
		t.Errorf("Distribution: title %q, hostArchitectures %q, min OS %q", dist.Title, dist.Options.Host, dist.OSVersion.Min)
	}
	if len(dist.PkgRefs) != 1 || dist.PkgRefs[0].ID != service.Label || dist.PkgRefs[0].Version != "1.2.3" ||
		dist.PkgRefs[0].Path != "#clearance-agent.pkg" {
		t.Errorf("Distribution pkg-refs: %+v", dist.PkgRefs)
	}
	var refs int
	for _, c := range dist.Choices {
		for _, r := range c.Refs {
			refs++
			if r.ID != service.Label {
				t.Errorf("choice %s refers to %s", c.ID, r.ID)
			}
		}
	}
	if refs != 1 {
		t.Errorf("%d choices install the component, want 1", refs)
	}
	var info struct {
		ID       string `xml:"identifier,attr"`
		Version  string `xml:"version,attr"`
		Location string `xml:"install-location,attr"`
		Payload  struct {
			N int `xml:"numberOfFiles,attr"`
		} `xml:"payload"`
		Pre struct {
			File string `xml:"file,attr"`
		} `xml:"scripts>preinstall"`
		Post struct {
			File string `xml:"file,attr"`
		} `xml:"scripts>postinstall"`
	}
	if err := xml.Unmarshal(read("clearance-agent.pkg/PackageInfo"), &info); err != nil {
		t.Fatalf("PackageInfo: %v", err)
	}
	if info.ID != service.Label || info.Version != "1.2.3" || info.Location != "/" ||
		info.Payload.N != len(lines) || info.Pre.File != "./preinstall" || info.Post.File != "./postinstall" {
		t.Errorf("PackageInfo: %+v", info)
	}
}

func TestUninstallScriptParses(t *testing.T) {
	dir := t.TempDir()
	b, err := Scripts.ReadFile("scripts/uninstall")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "uninstall")
	os.WriteFile(p, b, 0o755)
	shCheck(t, p)
}

// TestMDMScriptsShareTheWatchdog checks that every MDM script holds the
// same watchdog around status, written out in each so that each stays a
// file an administrator uploads as it is, and that each parses.
func TestMDMScriptsShareTheWatchdog(t *testing.T) {
	const begin = "# ---- begin status watchdog:"
	const end = "# ---- end status watchdog ----\n"
	var first, firstName string
	dir := t.TempDir()
	for _, name := range sortedKeys(MDMScripts) {
		b, err := Scripts.ReadFile(MDMScripts[name])
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		os.WriteFile(p, b, 0o755)
		shCheck(t, p)
		s := string(b)
		i, j := strings.Index(s, begin), strings.Index(s, end)
		if i < 0 || j < i || strings.Count(s, begin) != 1 {
			t.Errorf("%s: no single watchdog between %q and %q", name, begin, end)
			continue
		}
		block := s[i : j+len(end)]
		if first == "" {
			first, firstName = block, name
		} else if block != first {
			t.Errorf("%s's watchdog differs from %s's: change it in every MDM script", name, firstName)
		}
	}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func TestBuildRejects(t *testing.T) {
	if _, err := Build(Config{AgentARM64: []byte("x"), AgentAMD64: []byte("y")}); err == nil {
		t.Error("no version accepted")
	}
	if _, err := Build(Config{Version: "1", AgentARM64: []byte("x"), AgentAMD64: []byte("y")}); err == nil {
		t.Error("non-Mach-O binaries accepted")
	}
}

func checkFat(t *testing.T, path string, arm, amd []byte) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o755 {
		t.Errorf("agent mode %v", fi.Mode())
	}
	ff, err := macho.OpenFat(path)
	if err != nil {
		t.Fatalf("installed agent is not a fat Mach-O: %v", err)
	}
	defer ff.Close()
	got := map[macho.Cpu]bool{}
	for _, a := range ff.Arches {
		got[a.Cpu] = true
		if a.Type != macho.TypeExec {
			t.Errorf("%v slice is %v, want an executable", a.Cpu, a.Type)
		}
	}
	if len(ff.Arches) != 2 || !got[macho.CpuArm64] || !got[macho.CpuAmd64] {
		t.Errorf("fat agent arches: %v", got)
	}
	if fi.Size() < int64(len(arm)+len(amd)) {
		t.Errorf("fat agent %d bytes, smaller than its slices", fi.Size())
	}
}

func shCheck(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("#!/bin/sh\n")) {
		t.Errorf("%s: does not start with #!/bin/sh", path)
	}
	if out, err := exec.Command("sh", "-n", path).CombinedOutput(); err != nil {
		t.Errorf("sh -n %s: %v\n%s", path, err, out)
	}
}

func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func cpioList(t *testing.T, cpioBin string, archive []byte) []payloadLine {
	t.Helper()
	cmd := exec.Command(cpioBin, "-itvn", "--quiet")
	cmd.Stdin = bytes.NewReader(archive)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -itvn: %v\n%s", err, out)
	}
	var lines []payloadLine
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(l)
		if len(f) != 9 {
			t.Fatalf("unexpected cpio line %q", l)
		}
		size, _ := strconv.Atoi(f[4])
		lines = append(lines, payloadLine{f[0], f[2], f[3], f[8], size})
	}
	return lines
}

func cpioExtract(t *testing.T, cpioBin string, archive []byte, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(cpioBin, "-idm", "--quiet", "--no-absolute-filenames")
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(archive)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -idm: %v\n%s", err, out)
	}
}
