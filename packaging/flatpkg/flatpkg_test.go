package flatpkg

import (
	"io/fs"
	"strings"
	"testing"
	"time"
)

func product() Product {
	return Product{
		Title: "T", Identifier: "com.example.t", Version: "1", MinOSVersion: "12.0",
		HostArchitectures: []string{"x86_64", "arm64"}, ComponentName: "t",
		Files:   []File{{Path: "a/b/c", Mode: 0o644, Data: []byte("c")}},
		Scripts: []Script{{Name: "postinstall", Data: []byte("#!/bin/sh\n")}},
		ModTime: time.Unix(1, 0),
	}
}

func TestPayloadEntriesAddParentsInOrder(t *testing.T) {
	t.Parallel()
	es, err := payloadEntries([]File{
		{Path: "a-b", Mode: 0o600},
		{Path: "a/z/f", Mode: 0o644, UID: 501},
		{Path: "/a/b", Mode: 0o755},
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range es {
		kind := "f"
		if e.mode.IsDir() {
			kind = "d"
			if e.mode != fs.ModeDir|0o755 || e.uid != 0 || e.gid != 0 {
				t.Errorf("%s: directory %v %d:%d, want root:wheel 0755", e.path, e.mode, e.uid, e.gid)
			}
		}
		got = append(got, kind+e.path)
	}
	// Parents precede children; "a/..." sorts before "a-b" by component.
	want := "d. d./a f./a/b d./a/z f./a/z/f f./a-b"
	if strings.Join(got, " ") != want {
		t.Errorf("entries %q, want %q", strings.Join(got, " "), want)
	}
}

func TestBuildRejects(t *testing.T) {
	t.Parallel()
	for name, mutate := range map[string]func(*Product){
		"no title":          func(p *Product) { p.Title = "" },
		"slash in name":     func(p *Product) { p.ComponentName = "a/b" },
		"no files":          func(p *Product) { p.Files = nil },
		"escaping path":     func(p *Product) { p.Files[0].Path = "../etc/passwd" },
		"file and dir":      func(p *Product) { p.Files = append(p.Files, File{Path: "a/b", Mode: 0o644}) },
		"dup file":          func(p *Product) { p.Files = append(p.Files, p.Files[0]) },
		"symlink":           func(p *Product) { p.Files[0].Mode |= fs.ModeSymlink },
		"unknown script":    func(p *Product) { p.Scripts[0].Name = "preflight" },
		"dup script":        func(p *Product) { p.Scripts = append(p.Scripts, p.Scripts[0]) },
		"script no shebang": func(p *Product) { p.Scripts[0].Data = []byte("echo hi\n") },
	} {
		p := product()
		p.Files = append([]File(nil), p.Files...)
		p.Scripts = append([]Script(nil), p.Scripts...)
		mutate(&p)
		if _, err := Build(p); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := Build(product()); err != nil {
		t.Errorf("valid product rejected: %v", err)
	}
}

func TestXMLEscapes(t *testing.T) {
	t.Parallel()
	p := product()
	p.Title = `A & "B" <C>`
	d := string(distribution(p, 1))
	if !strings.Contains(d, "<title>A &amp; &#34;B&#34; &lt;C&gt;</title>") {
		t.Errorf("title not escaped:\n%s", d)
	}
}
