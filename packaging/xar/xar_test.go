package xar

import (
	"bytes"
	"crypto/sha1"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	gxar "github.com/blacktop/go-macho/pkg/xar"
	"github.com/clearance/clearance/internal/testkit"
)

var mtime = time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)

// sample is a flat-package-shaped archive: a top-level file, a directory
// and files inside it, in both encodings.
func sample() []File {
	big := bytes.Repeat([]byte("clearance "), 5000)
	return []File{
		{Name: "Distribution", Mode: 0o644, User: "root", Group: "wheel", ModTime: mtime, Data: []byte("<installer-gui-script/>\n")},
		{Name: "agent.pkg", Mode: fs.ModeDir | 0o755, User: "root", Group: "wheel", ModTime: mtime},
		{Name: "agent.pkg/PackageInfo", Mode: 0o644, ModTime: mtime, Data: []byte("<pkg-info/>\n")},
		{Name: "agent.pkg/Payload", Mode: 0o644, ModTime: mtime, Data: big, Encoding: Stored},
		{Name: "agent.pkg/Bom", Mode: 0o600, UID: 501, GID: 20, ModTime: mtime, Data: big},
		{Name: "agent.pkg/Empty", Mode: 0o644, ModTime: mtime},
	}
}

func build(t *testing.T, files []File) []byte {
	t.Helper()
	w := NewWriter(mtime)
	for _, f := range files {
		if err := w.Add(f); err != nil {
			t.Fatal(err)
		}
	}
	b, err := w.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestGoXarReaderVerifiesChecksums(t *testing.T) {
	t.Parallel()
	files := sample()
	archive := build(t, files)

	// NewReader checks the header and the TOC checksum stored in the heap.
	r, err := gxar.NewReader(bytes.NewReader(archive), int64(len(archive)))
	if err != nil {
		t.Fatalf("independent xar reader rejected the archive: %v", err)
	}
	got := map[string]*gxar.File{}
	for _, f := range r.Files {
		got[f.Name] = f
	}
	var names []string
	for _, f := range files {
		if f.Mode.IsDir() {
			continue // that reader lists only files
		}
		names = append(names, f.Name)
		rf, ok := got[f.Name]
		if !ok {
			t.Errorf("%s missing; reader saw %v", f.Name, keys(got))
			continue
		}
		if !rf.VerifyChecksum() {
			t.Errorf("%s: archived checksum does not verify", f.Name)
		}
		rc, err := rf.Open()
		if err != nil {
			t.Fatalf("%s: %v", f.Name, err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatalf("%s: %v", f.Name, err)
		}
		if !bytes.Equal(data, f.Data) {
			t.Errorf("%s: extracted %d bytes differ from the %d added", f.Name, len(data), len(f.Data))
		}
		if sum := sha1.Sum(data); !bytes.Equal(sum[:], rf.ExtractedChecksum.Sum) {
			t.Errorf("%s: extracted checksum does not match content", f.Name)
		}
		if rf.Size != int64(len(f.Data)) {
			t.Errorf("%s: size %d, want %d", f.Name, rf.Size, len(f.Data))
		}
		if rf.Info.Uid != f.UID || rf.Info.Gid != f.GID || rf.Info.Mtime != mtime.Unix() {
			t.Errorf("%s: uid/gid/mtime %d/%d/%d, want %d/%d/%d", f.Name,
				rf.Info.Uid, rf.Info.Gid, rf.Info.Mtime, f.UID, f.GID, mtime.Unix())
		}
		wantEnc := "application/x-gzip"
		if f.Encoding == Stored {
			wantEnc = "application/octet-stream"
		}
		if rf.EncodingMimetype != wantEnc {
			t.Errorf("%s: encoding %q, want %q", f.Name, rf.EncodingMimetype, wantEnc)
		}
	}
	if len(got) != len(names) {
		t.Errorf("reader saw %v, want %v", keys(got), names)
	}
}

func TestGoXarReaderDetectsTampering(t *testing.T) {
	t.Parallel()
	archive := build(t, sample())
	// Flip a byte in the compressed TOC: the stored TOC checksum no
	// longer matches, so the checksum really is being written and read.
	bad := bytes.Clone(archive)
	bad[headerSize+10] ^= 0xff
	if _, err := gxar.NewReader(bytes.NewReader(bad), int64(len(bad))); err == nil {
		t.Error("reader accepted an archive with a corrupted TOC")
	}
}

func TestBsdtarListsAndExtracts(t *testing.T) {
	bsdtar := testkit.RequireTool(t, "bsdtar")
	files := sample()
	dir := t.TempDir()
	path := filepath.Join(dir, "sample.xar")
	if err := os.WriteFile(path, build(t, files), 0o644); err != nil {
		t.Fatal(err)
	}

	out, err := exec.Command(bsdtar, "-tf", path).CombinedOutput()
	if err != nil {
		t.Fatalf("bsdtar -tf: %v\n%s", err, out)
	}
	var listed, want []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		listed = append(listed, strings.TrimSuffix(l, "/"))
	}
	for _, f := range files {
		want = append(want, f.Name)
	}
	sort.Strings(listed)
	sort.Strings(want)
	if strings.Join(listed, "\n") != strings.Join(want, "\n") {
		t.Errorf("bsdtar lists\n%s\nwant\n%s", strings.Join(listed, "\n"), strings.Join(want, "\n"))
	}

	ext := filepath.Join(dir, "x")
	os.Mkdir(ext, 0o755)
	if out, err := exec.Command(bsdtar, "-xpf", path, "-C", ext).CombinedOutput(); err != nil {
		t.Fatalf("bsdtar -xf: %v\n%s", err, out)
	}
	for _, f := range files {
		p := filepath.Join(ext, f.Name)
		fi, err := os.Stat(p)
		if err != nil {
			t.Errorf("not extracted: %v", err)
			continue
		}
		if fi.Mode().Perm() != f.Mode.Perm() || fi.IsDir() != f.Mode.IsDir() {
			t.Errorf("%s: mode %v, want %v", f.Name, fi.Mode(), f.Mode)
		}
		if !fi.ModTime().Equal(mtime) {
			t.Errorf("%s: mtime %v, want %v", f.Name, fi.ModTime(), mtime)
		}
		if f.Mode.IsDir() {
			continue
		}
		data, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(data, f.Data) {
			t.Errorf("%s: extracted content differs (%v)", f.Name, err)
		}
	}
}

func TestDeterministic(t *testing.T) {
	t.Parallel()
	if !bytes.Equal(build(t, sample()), build(t, sample())) {
		t.Error("same inputs gave different archives")
	}
}

func TestAddRejects(t *testing.T) {
	t.Parallel()
	for _, f := range []File{
		{Name: "../x"},
		{Name: "a//b"},
		{Name: "nodir/x"},
		{Name: "link", Mode: fs.ModeSymlink},
	} {
		if err := NewWriter(mtime).Add(f); err == nil {
			t.Errorf("Add(%q, %v) accepted", f.Name, f.Mode)
		}
	}
	w := NewWriter(mtime)
	w.Add(File{Name: "a"})
	if err := w.Add(File{Name: "a"}); err == nil {
		t.Error("duplicate accepted")
	}
	if err := w.Add(File{Name: "a/b"}); err == nil {
		t.Error("child of a regular file accepted")
	}
}

func keys(m map[string]*gxar.File) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	sort.Strings(k)
	return k
}
