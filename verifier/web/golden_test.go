package web

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// The golden pages are kept in pieces, each piece once, so that a change to
// what many pages share rewrites one file:
//
//   - testdata/layout.html is the frame of every page (layout.html), with
//     {{title}} and {{main}} where the page's own title and <main> go, and
//     the inlined stylesheet as its SHA-256 (assets/style.css is the text).
//   - testdata/parts/NAME.html is a piece several pages render byte for
//     byte (a template of its own); a line {{page}} in it stands for the
//     lines that are each page's own (the footer's entries, the steps).
//   - testdata/PAGE.html is what page PAGE puts in the frame: its title on
//     the first line, then its <main>, where a line {{NAME}} stands for
//     part NAME and, for a part with a {{page}} line, the lines up to the
//     next {{end}} are the page's own lines.
//
// TestGolden renders every page in full and compares it byte for byte with
// its pieces put back together; -update rewrites all of them.

// hole marks, in the data a part is rendered with for -update, the one line
// that is each page's own.
const hole = "PAGE-OWN-LINE"

// goldenParts are the pieces several pages render the same: each is the
// named template of the package, rendered with data.
var goldenParts = []struct {
	name, template string
	data           any
}{
	{"mark-warning", "mark-warning", nil},
	{"check-again", "retry", retry{Action: retryPath, Token: retryToken}},
	{"steps", "steps", []string{hole}},
	{"helpdesk", "helpdesk", helpdesk{Notes: []string{hole}}},
}

// part is a shared piece as lines: head, then the page's own lines (when
// wraps), then tail.
type part struct {
	name       string
	head, tail []string
	wraps      bool
}

const (
	titleMark = "{{title}}"
	styleMark = "{{style.css "
	mainMark  = "{{main}}"
	holeMark  = "{{page}}"
	endMark   = "{{end}}"
)

func TestGolden(t *testing.T) {
	if *update {
		writeGoldens(t)
	}
	layout, err := os.ReadFile(filepath.Join("testdata", "layout.html"))
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	f, err := parseFrame(string(layout))
	if err != nil {
		t.Fatalf("testdata/layout.html: %v", err)
	}
	if f.styleSum != styleSum() {
		t.Fatalf("the stylesheet is no longer the one testdata/layout.html pins (%s, now %s): run with -update if the change is intended", f.styleSum, styleSum())
	}
	parts := readParts(t)
	used := map[string]bool{}
	for _, p := range renderPages(t) {
		t.Run(p.name, func(t *testing.T) {
			golden := filepath.Join("testdata", p.name+".html")
			own, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			want, err := f.assemble(parts, string(own), used)
			if err != nil {
				t.Fatalf("%s: %v", golden, err)
			}
			if got := p.rec.Body.String(); got != want {
				t.Errorf("page differs from %s with testdata/layout.html and testdata/parts (run with -update if the change is intended)\n%s", golden, firstDiff(got, want))
			}
		})
	}
	for _, p := range parts {
		if !used[p.name] {
			t.Errorf("part %s is in no page: take it out of goldenParts", p.name)
		}
	}
}

// frame is testdata/layout.html cut at its marks; the stylesheet is there
// as its digest.
type frame struct {
	beforeTitle, beforeStyle, styleSum, beforeMain, after string
}

func parseFrame(layout string) (frame, error) {
	var f frame
	var ok bool
	// Each mark in turn: what comes before it is the field's.
	for _, c := range []struct {
		mark   string
		before *string
	}{
		{titleMark, &f.beforeTitle},
		{styleMark, &f.beforeStyle},
		{"}}", &f.styleSum},
		{mainMark, &f.beforeMain},
	} {
		if *c.before, layout, ok = strings.Cut(layout, c.mark); !ok {
			return frame{}, fmt.Errorf("no %s", c.mark)
		}
	}
	f.after = layout
	return f, nil
}

// assemble puts a page back together from the frame, the parts and the
// page's own golden, noting in used the parts it takes.
func (f frame) assemble(parts []part, own string, used map[string]bool) (string, error) {
	title, main, _ := strings.Cut(own, "\n")
	byName := map[string]part{}
	for _, p := range parts {
		byName[p.name] = p
	}
	var out []string
	lines := strings.Split(main, "\n")
	for i := 0; i < len(lines); i++ {
		name, ok := mark(lines[i])
		if !ok {
			out = append(out, lines[i])
			continue
		}
		p, ok := byName[name]
		if !ok {
			return "", fmt.Errorf("line %d: no part %s", i+2, name)
		}
		used[name] = true
		out = append(out, p.head...)
		if p.wraps {
			end := i + 1
			for end < len(lines) && lines[end] != endMark {
				end++
			}
			if end == len(lines) {
				return "", fmt.Errorf("line %d: part %s has no %s", i+2, name, endMark)
			}
			out = append(out, lines[i+1:end]...)
			i = end
		}
		out = append(out, p.tail...)
	}
	return f.beforeTitle + title + f.beforeStyle + styleCSS + f.beforeMain + strings.Join(out, "\n") + f.after, nil
}

// mark returns the part a golden line names.
func mark(line string) (string, bool) {
	name, ok := strings.CutPrefix(line, "{{")
	if !ok {
		return "", false
	}
	name, ok = strings.CutSuffix(name, "}}")
	return name, ok && name != "" && !strings.ContainsAny(name, "{} ")
}

func styleSum() string {
	sum := sha256.Sum256([]byte(styleCSS))
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
}

func readParts(t *testing.T) []part {
	t.Helper()
	var parts []part
	for _, gp := range goldenParts {
		b, err := os.ReadFile(filepath.Join("testdata", "parts", gp.name+".html"))
		if err != nil {
			t.Fatalf("%v (run with -update to create it)", err)
		}
		parts = append(parts, splitPart(gp.name, strings.Split(strings.TrimSuffix(string(b), "\n"), "\n"), holeMark))
	}
	return parts
}

// splitPart cuts a part's lines at the line that is holeLine, or that
// holds hole when holeLine is hole; a part without one has only a head.
func splitPart(name string, lines []string, holeLine string) part {
	for i, l := range lines {
		if l == holeLine || holeLine == hole && strings.Contains(l, hole) {
			return part{name: name, head: lines[:i], tail: lines[i+1:], wraps: true}
		}
	}
	return part{name: name, head: lines}
}

// writeGoldens rewrites every golden from the pages as they render now.
func writeGoldens(t *testing.T) {
	t.Helper()
	r := newRenderer(t)
	var parts []part
	for _, gp := range goldenParts {
		var b bytes.Buffer
		if err := r.denied.ExecuteTemplate(&b, gp.template, gp.data); err != nil {
			t.Fatalf("part %s: %v", gp.name, err)
		}
		p := splitPart(gp.name, strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n"), hole)
		if len(p.head) == 0 || p.wraps && len(p.tail) == 0 {
			t.Fatalf("part %s: %q has nothing before or after the page's own line", gp.name, b.String())
		}
		parts = append(parts, p)
		text := p.head
		if p.wraps {
			text = append(append(append([]string{}, p.head...), holeMark), p.tail...)
		}
		writeGolden(t, filepath.Join("parts", gp.name+".html"), strings.Join(text, "\n")+"\n")
	}

	var layout string
	for _, pc := range renderPages(t) {
		page := pc.rec.Body.String()
		frame, title, main, err := cutPage(page)
		if err != nil {
			t.Fatalf("%s: %v", pc.name, err)
		}
		if layout == "" {
			layout = frame
		} else if frame != layout {
			t.Fatalf("%s: the page's frame is not the other pages' layout:\n%s", pc.name, firstDiff(frame, layout))
		}
		own := title + "\n" + strings.Join(ownLines(strings.Split(main, "\n"), parts), "\n")
		f, err := parseFrame(frame)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := f.assemble(parts, own, map[string]bool{}); err != nil || got != page {
			t.Fatalf("%s: the page does not split into pieces that put it back together (%v):\n%s", pc.name, err, firstDiff(got, page))
		}
		writeGolden(t, pc.name+".html", own)
	}
	writeGolden(t, "layout.html", layout)
}

// cutPage splits a page into the layout's frame, its title and its <main>.
func cutPage(page string) (frame, title, main string, err error) {
	cut := func(s, open, close string) (before, inner, after string, ok bool) {
		before, rest, ok := strings.Cut(s, open)
		if !ok {
			return "", "", "", false
		}
		inner, after, ok = strings.Cut(rest, close)
		return before + open, inner, close + after, ok
	}
	before, title, after, ok := cut(page, "<title>", "</title>")
	if !ok || strings.ContainsAny(title, "\n{}") {
		return "", "", "", errors.New("no one-line <title>")
	}
	head, style, after, ok := cut(after, "<style>", "</style>")
	if !ok || style != styleCSS {
		return "", "", "", errors.New("the <style> is not the stylesheet")
	}
	body, main, after, ok := cut(after, "<main>\n", "\n</main>\n")
	if !ok || strings.Contains(after, "<main") {
		return "", "", "", errors.New("no one <main>")
	}
	return before + titleMark + head + styleMark + styleSum() + "}}" + body + mainMark + after, title, main, nil
}

// ownLines writes a page's <main> lines with each part it renders as the
// part's mark.
func ownLines(lines []string, parts []part) []string {
	var out []string
	for i := 0; i < len(lines); {
		n, taken := 0, part{}
		for _, p := range parts {
			if n = matchPart(lines[i:], p); n > 0 {
				taken = p
				break
			}
		}
		if n == 0 {
			out = append(out, lines[i])
			i++
			continue
		}
		out = append(out, "{{"+taken.name+"}}")
		if taken.wraps {
			out = append(out, lines[i+len(taken.head):i+n-len(taken.tail)]...)
			out = append(out, endMark)
		}
		i += n
	}
	return out
}

// matchPart returns how many of lines, from the first, are part p; 0 when
// they do not begin with it.
func matchPart(lines []string, p part) int {
	if !hasLines(lines, p.head) {
		return 0
	}
	if !p.wraps {
		return len(p.head)
	}
	for j := len(p.head); j <= len(lines)-len(p.tail); j++ {
		if hasLines(lines[j:], p.tail) {
			return j + len(p.tail)
		}
	}
	return 0
}

func hasLines(lines, prefix []string) bool {
	if len(lines) < len(prefix) {
		return false
	}
	for i, l := range prefix {
		if lines[i] != l {
			return false
		}
	}
	return true
}

func writeGolden(t *testing.T, name, text string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// firstDiff shows where got first differs from want, by line.
func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < len(g) || i < len(w); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl || i >= len(g) || i >= len(w) {
			return fmt.Sprintf("line %d:\n got: %q\nwant: %q", i+1, gl, wl)
		}
	}
	return "(no difference)"
}
