package bom

import (
	"bytes"
	"fmt"
	"io/fs"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/clearance/clearance/internal/testkit"
	"github.com/clearance/clearance/packaging/internal/bomread"
)

func entriesFor(n int) []Entry {
	mt := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	es := []Entry{
		{Path: ".", Mode: fs.ModeDir | 0o755, ModTime: mt},
		{Path: "./usr", Mode: fs.ModeDir | 0o755, ModTime: mt},
		{Path: "./Library", Mode: fs.ModeDir | 0o755, GID: 80, ModTime: mt},
		{Path: "./usr/local", Mode: fs.ModeDir | 0o755, ModTime: mt},
		{Path: "./usr/local/bin", Mode: fs.ModeDir | 0o755, ModTime: mt},
		{Path: "./usr/local/bin/tool", Mode: 0o755, ModTime: mt, Size: 3, Checksum: Checksum([]byte("abc"))},
		{Path: "./Library/a.plist", Mode: 0o644, UID: 501, GID: 20, ModTime: mt, Size: 5, Checksum: 7},
		{Path: "./usr/local/bin/link", Mode: fs.ModeSymlink | 0o755, ModTime: mt, Size: 4, Link: "tool"},
	}
	for i := range n {
		es = append(es, Entry{Path: fmt.Sprintf("./usr/f%04d", i), Mode: 0o600, ModTime: mt, Size: int64(i)})
	}
	return es
}

func TestIndependentReaderListsEntries(t *testing.T) {
	t.Parallel()
	// 0 extra files fits one leaf; 600 needs three leaves and a branch.
	for _, extra := range []int{0, 600} {
		t.Run(strconv.Itoa(extra), func(t *testing.T) {
			t.Parallel()
			es := entriesFor(extra)
			b, err := Build(es)
			if err != nil {
				t.Fatal(err)
			}
			got, err := bomread.Read(b)
			if err != nil {
				t.Fatalf("independent reader: %v", err)
			}
			if len(got) != len(es) {
				t.Fatalf("reader found %d paths, want %d", len(got), len(es))
			}
			byPath := map[string]bomread.Path{}
			for _, p := range got {
				byPath[p.Path] = p
			}
			for _, e := range es {
				p, ok := byPath[e.Path]
				if !ok {
					t.Errorf("%s missing", e.Path)
					continue
				}
				wantType, wantUnix, wantSize := byte(1), uint16(0o100000), uint32(e.Size)
				switch {
				case e.Mode.IsDir():
					wantType, wantUnix, wantSize = 2, 0o040000, 0
				case e.Mode&fs.ModeSymlink != 0:
					wantType, wantUnix = 3, 0o120000
				}
				want := bomread.Path{
					Path: e.Path, Type: wantType, Mode: wantUnix | uint16(e.Mode.Perm()),
					UID: e.UID, GID: e.GID, ModTime: uint32(e.ModTime.Unix()), Size: wantSize,
					Checksum: e.Checksum, Link: e.Link,
				}
				if p != want {
					t.Errorf("%s:\n got %+v\nwant %+v", e.Path, p, want)
				}
			}
			// Breadth-first with sorted siblings, as the tree is keyed.
			if got[0].Path != "." || got[1].Path != "./Library" || got[2].Path != "./usr" {
				t.Errorf("unexpected order: %s, %s, %s", got[0].Path, got[1].Path, got[2].Path)
			}
		})
	}
}

func TestChecksumMatchesCksum(t *testing.T) {
	cksum := testkit.RequireTool(t, "cksum")
	for _, data := range []string{"", "a", "abc", strings.Repeat("clearance\n", 1000)} {
		cmd := exec.Command(cksum)
		cmd.Stdin = strings.NewReader(data)
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		want, _ := strconv.ParseUint(strings.Fields(string(out))[0], 10, 32)
		if got := Checksum([]byte(data)); got != uint32(want) {
			t.Errorf("Checksum(%d bytes) = %d, cksum says %d", len(data), got, want)
		}
	}
}

func TestBuildRejects(t *testing.T) {
	t.Parallel()
	root := Entry{Path: ".", Mode: fs.ModeDir | 0o755}
	for name, es := range map[string][]Entry{
		"no root":        {{Path: "./a"}},
		"orphan":         {root, {Path: "./a/b"}},
		"parent is file": {root, {Path: "./a"}, {Path: "./a/b"}},
		"unclean":        {root, {Path: "./a/../b"}},
		"absolute":       {root, {Path: "/a"}},
		"duplicate":      {root, {Path: "./a"}, {Path: "./a"}},
		"too big":        {root, {Path: "./a", Size: 1 << 33}},
		"link no target": {root, {Path: "./a", Mode: fs.ModeSymlink}},
	} {
		if _, err := Build(es); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestDeterministic(t *testing.T) {
	t.Parallel()
	a, _ := Build(entriesFor(300))
	es := entriesFor(300)
	// Input order must not matter.
	for i, j := 0, len(es)-1; i < j; i, j = i+1, j-1 {
		es[i], es[j] = es[j], es[i]
	}
	b, _ := Build(es)
	if !bytes.Equal(a, b) {
		t.Error("same entries in another order gave another Bom")
	}
}
