package cpio

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/clearance/clearance/internal/testkit"
)

type entry struct {
	hdr  Header
	body string
}

func TestRealCpioReadsArchive(t *testing.T) {
	cpioBin := testkit.RequireTool(t, "cpio")
	mtime := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	entries := []entry{
		{hdr: Header{Name: ".", Mode: fs.ModeDir | 0o755}},
		{hdr: Header{Name: "./usr", Mode: fs.ModeDir | 0o755}},
		{hdr: Header{Name: "./usr/bin", Mode: fs.ModeDir | 0o750, UID: 0, GID: 80}},
		{hdr: Header{Name: "./usr/bin/tool", Mode: 0o755}, body: "#!/bin/sh\necho hi\n"},
		{hdr: Header{Name: "./usr/notes.txt", Mode: 0o640, UID: 501, GID: 20}, body: strings.Repeat("x", 1000)},
		{hdr: Header{Name: "./usr/empty", Mode: 0o600}},
		{hdr: Header{Name: "./usr/link", Mode: fs.ModeSymlink | 0o777}, body: "bin/tool"},
	}
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		h.ModTime = mtime
		h.Size = int64(len(e.body))
		if err := w.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	// 1. The listing shows every entry with its type, mode, owner and size.
	list := exec.Command(cpioBin, "-itvn", "--quiet")
	list.Stdin = bytes.NewReader(buf.Bytes())
	list.Env = append(os.Environ(), "TZ=UTC", "LC_ALL=C")
	out, err := list.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -itvn: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != len(entries) {
		t.Fatalf("cpio listed %d entries, want %d:\n%s", len(lines), len(entries), out)
	}
	for i, e := range entries {
		f := strings.Fields(lines[i])
		// mode nlink uid gid size month day time name [-> target]
		if len(f) < 9 {
			t.Fatalf("unexpected line %q", lines[i])
		}
		wantMode := e.hdr.Mode.String()
		switch {
		case e.hdr.Mode.IsDir():
			wantMode = "d" + wantMode[1:]
		case e.hdr.Mode&fs.ModeSymlink != 0:
			wantMode = "l" + wantMode[1:]
		}
		wantSize := len(e.body)
		if e.hdr.Mode.IsDir() {
			wantSize = 0
		}
		got := strings.Join([]string{f[0], f[2], f[3], f[4], f[8]}, " ")
		want := strings.Join([]string{wantMode, strconv.Itoa(e.hdr.UID), strconv.Itoa(e.hdr.GID), strconv.Itoa(wantSize), e.hdr.Name}, " ")
		if got != want {
			t.Errorf("entry %d: cpio shows %q, want %q", i, got, want)
		}
		if f[5] != "Mar" || f[6] != "1" || f[7] != "2024" {
			t.Errorf("entry %d: cpio shows date %v, want Mar 1 2024", i, f[5:8])
		}
	}

	// 2. Extraction restores content, modes, owners and times.
	dir := t.TempDir()
	ext := exec.Command(cpioBin, "-idm", "--quiet", "--no-absolute-filenames")
	ext.Dir = dir
	ext.Stdin = bytes.NewReader(buf.Bytes())
	if out, err := ext.CombinedOutput(); err != nil {
		t.Fatalf("cpio -idm: %v\n%s", err, out)
	}
	for _, e := range entries[1:] {
		p := filepath.Join(dir, e.hdr.Name)
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Type() != e.hdr.Mode.Type() {
			t.Errorf("%s: type %v, want %v", e.hdr.Name, fi.Mode().Type(), e.hdr.Mode.Type())
		}
		switch {
		case e.hdr.Mode&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil || target != e.body {
				t.Errorf("%s: link target %q (%v), want %q", e.hdr.Name, target, err, e.body)
			}
			continue
		case e.hdr.Mode.IsDir():
		default:
			b, err := os.ReadFile(p)
			if err != nil || string(b) != e.body {
				t.Errorf("%s: content differs (%v)", e.hdr.Name, err)
			}
			if !fi.ModTime().Equal(mtime) {
				t.Errorf("%s: mtime %v, want %v", e.hdr.Name, fi.ModTime(), mtime)
			}
		}
		if fi.Mode().Perm() != e.hdr.Mode.Perm() {
			t.Errorf("%s: mode %v, want %v", e.hdr.Name, fi.Mode().Perm(), e.hdr.Mode.Perm())
		}
		if os.Geteuid() == 0 {
			uid, gid := owner(fi)
			if uid != e.hdr.UID || gid != e.hdr.GID {
				t.Errorf("%s: owner %d:%d, want %d:%d", e.hdr.Name, uid, gid, e.hdr.UID, e.hdr.GID)
			}
		}
	}
}

func TestWriterRejectsMisuse(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	w := NewWriter(&buf)
	if err := w.WriteHeader(&Header{Name: "dev", Mode: fs.ModeDevice | 0o600}); err == nil {
		t.Error("device entry accepted")
	}
	if err := w.WriteHeader(&Header{Name: "f", Mode: 0o644, Size: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("abc")); err != ErrWriteTooLong {
		t.Errorf("overlong write: %v", err)
	}
	if err := w.Close(); err == nil {
		t.Error("Close accepted a short entry")
	}
	if err := NewWriter(&buf).WriteHeader(&Header{Name: "big", UID: 1 << 20}); err == nil {
		t.Error("uid beyond odc's 6 octal digits accepted")
	}
}

func TestHeaderBytes(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	w := NewWriter(&buf)
	h := &Header{Name: "./a", Mode: 0o644, UID: 0, GID: 0, ModTime: time.Unix(0o1234, 0), Size: 2}
	if err := w.WriteHeader(h); err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("hi"))
	w.Close()
	want := "070707" + "000000" + "000001" + "100644" + "000000" + "000000" + "000001" + "000000" +
		"00000001234" + "000004" + "00000000002" + "./a\x00" + "hi" +
		"070707" + "000000" + "000000" + "000000" + "000000" + "000000" + "000001" + "000000" +
		"00000000000" + "000013" + "00000000000" + "TRAILER!!!\x00"
	if buf.String() != want {
		t.Errorf("archive bytes\n got %q\nwant %q", buf.String(), want)
	}
}
