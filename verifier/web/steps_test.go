package web

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/html"

	"github.com/clearance/clearance/pkg/printable"
)

// show writes blocks compactly: "p: text", "ol(3): a | b", "ul: a | b",
// a step's points in brackets.
func show(bs []block) string {
	var out []string
	for _, b := range bs {
		if len(b.Items) == 0 {
			out = append(out, "p: "+b.Para)
			continue
		}
		kind := "ul"
		if b.Ordered {
			kind = "ol"
			if b.Start != 0 {
				kind += fmt.Sprintf("(%d)", b.Start)
			}
		}
		var items []string
		for _, it := range b.Items {
			s := it.Text
			if len(it.Points) > 0 {
				s += " [" + strings.Join(it.Points, "; ") + "]"
			}
			items = append(items, s)
		}
		out = append(out, kind+": "+strings.Join(items, " | "))
	}
	return strings.Join(out, "\n")
}

func TestParseText(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in, want string
	}{
		{"empty", "", ""},
		{"blank lines only", " \n\t\n  \n", ""},
		{"one paragraph", "Open System Settings.", "p: Open System Settings."},
		{"wrapped paragraph joins", "Encryption continues in the\nbackground; keep working.", "p: Encryption continues in the background; keep working."},
		{"blank line splits paragraphs", "One.\n\nTwo.", "p: One.\np: Two."},
		{"numbered steps", "1. Open it.\n2. Click it.\n3. Done.", "ol: Open it. | Click it. | Done."},
		{"parenthesis steps", "1) Open it.\n2) Click it.", "ol: Open it. | Click it."},
		{"wrapped step joins", "1. Choose a key. If unsure, ask your IT\n   team which one.\n2. Done.", "ol: Choose a key. If unsure, ask your IT team which one. | Done."},
		{"tab-indented continuation", "1. Choose\n\ta key.", "ol: Choose a key."},
		{"paragraph after steps", "1. Open it.\n2. Click it.\nThen choose Check again.", "ol: Open it. | Click it.\np: Then choose Check again."},
		{"paragraph before steps", "SIP needs Recovery, and your Mac will\nrestart.\n1. Shut down.", "p: SIP needs Recovery, and your Mac will restart.\nol: Shut down."},
		{"blank line between steps keeps one list", "1. Open it.\n\n2. Click it.", "ol: Open it. | Click it."},
		{"indented text after a blank line continues the step", "1. Open it.\n\n   It takes a while.\n2. Next.", "ol: Open it. It takes a while. | Next."},
		{"list resumed after a paragraph keeps its number", "1. One.\nA note.\n2. Two.", "ol: One.\np: A note.\nol(2): Two."},
		{"numbers as written are not renumbered", "1. One.\n1. Two.\n7. Three.", "ol: One. | Two. | Three."},
		{"list starting at 3", "3. Three.\n4. Four.", "ol(3): Three. | Four."},
		{"bullets", "- Apple silicon: hold power.\n* Intel: hold Command-R.\n• Either: wait.", "ul: Apple silicon: hold power. | Intel: hold Command-R. | Either: wait."},
		{"bullets then steps are two lists", "- a\n1. b", "ul: a\nol: b"},
		{"points within a step", "2. Start in Recovery:\n   - Apple silicon: press and hold\n     the power button.\n   - Intel: hold Command-R.\n3. Open Terminal.",
			"ol(2): Start in Recovery: [Apple silicon: press and hold the power button.; Intel: hold Command-R.] | Open Terminal."},
		{"marker alone, text below", "1.\n   Open it.", "ol: Open it."},
		{"empty step dropped", "1. Open it.\n2.\n3. Done.", "ol: Open it. | Done."},
		{"only empty steps", "1.\n2.\n3.", ""},
		{"version numbers are not steps", "macOS 14.6 or later.\n14.6 is the floor.", "p: macOS 14.6 or later. 14.6 is the floor."},
		{"four digits are not a step", "2024. A year.", "p: 2024. A year."},
		{"no space after the marker", "1.Open\n-dash", "p: 1.Open -dash"},
		{"number alone", "12", "p: 12"},
		{"indented marker with no list is text", "   - orphan\n   2. orphan", "p: - orphan 2. orphan"},
		{"CRLF and CR", "1. a\r\n2. b\r3. c", "ol: a | b | c"},
		{"trailing and leading space", "  \n  Hello.  \n\n", "p: Hello."},
		{"markup is text", "1. <b>Open</b> &amp; <script>x</script>", "ol: <b>Open</b> &amp; <script>x</script>"},
		{"Markdown is text", "**Bold** and [link](https://x)", "p: **Bold** and [link](https://x)"},
		{"control characters dropped", "Op\x00en\x07 it\x1b[31m.", "p: Open it[31m."},
		{"bidi controls dropped", "1. Type \u202ecsrutil disable\u202c now.", "ol: Type csrutil disable now."},
		{"invalid UTF-8 replaced", "caf\xe9 \xff", "p: caf\uFFFD \uFFFD"},
		{"Unicode line separator", "1. a\u20282. b", "ol: a | b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := show(parseText(tc.in)); got != tc.want {
				t.Errorf("parseText(%q) =\n%s\nwant\n%s", tc.in, got, tc.want)
			}
		})
	}
}

// Text past maxTextBytes is cut (on a character boundary) and says so;
// large inputs of every shape stay linear.
func TestParseTextOversized(t *testing.T) {
	t.Parallel()
	for name, in := range map[string]string{
		"one long line": strings.Repeat("x", 1<<20),
		"many steps":    strings.Repeat("1. step\n", 1<<17),
		"many markers":  strings.Repeat("1.\n", 1<<18),
		"deep indent":   "1. a\n" + strings.Repeat(" ", 1<<20) + "b",
		"many points":   "1. a\n" + strings.Repeat("   - p\n", 1<<17),
		"multibyte cut": strings.Repeat("é", maxTextBytes),
	} {
		start := time.Now()
		bs := parseText(in)
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s: took %v", name, d)
		}
		total := 0
		last := ""
		for _, b := range bs {
			total += len(b.Para)
			last = b.Para
			for _, it := range b.Items {
				total += len(it.Text)
				last = it.Text
				for _, p := range it.Points {
					total += len(p)
					last = p
				}
			}
		}
		if total > maxTextBytes+len("…") {
			t.Errorf("%s: %d bytes of text kept, limit %d", name, total, maxTextBytes)
		}
		if len(in) > maxTextBytes && !strings.HasSuffix(last, "…") && name != "many markers" {
			t.Errorf("%s: cut text doesn't end with …: %q", name, last[max(0, len(last)-20):])
		}
		if !utf8.ValidString(show(bs)) {
			t.Errorf("%s: cut inside a character", name)
		}
	}
}

// A page with hostile policy text has no markup from it: only the elements
// the template writes.
func TestParseTextRendersInert(t *testing.T) {
	t.Parallel()
	r := newRenderer(t)
	in := "1. <img src=x onerror=alert(1)>\n   - </li></ol><script>alert(1)</script>\n<a href=\"javascript:alert(1)\">x</a>\n- \"><svg onload=alert(1)>"
	rec := httptest.NewRecorder()
	r.Denied(rec, http.StatusForbidden, Denied{Kind: KindPolicy, Failing: []Finding{{Name: "x", Status: "FAIL", UserText: in, Resolution: in}}})
	checkInert(t, "steps", rec.Body.String(), 0)
	checkFixElements(t, rec.Body.String())
}

// checkFixElements fails unless the user text and fix hold only the
// elements of parsed text.
func checkFixElements(t testing.TB, body string) {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{"div": true, "h4": true, "p": true, "ol": true, "ul": true, "li": true}
	walk(doc, func(n *html.Node) {
		if c := attr(n, "class"); c != "fix" && c != "finding-about" {
			return
		}
		walk(n, func(m *html.Node) {
			if !allowed[m.Data] {
				t.Errorf("<%s> inside the finding's text", m.Data)
			}
			for _, a := range m.Attr {
				if a.Key != "class" && a.Key != "start" {
					t.Errorf("attribute %s=%q inside the finding's text", a.Key, a.Val)
				}
			}
		})
	})
}

// FuzzParseText: any text parses without panicking into well-formed blocks
// of clean, single-line text, and renders without markup of its own.
func FuzzParseText(f *testing.F) {
	for _, p := range examples().Policies {
		f.Add(p.Resolution)
		f.Add(p.UserText)
	}
	for _, s := range []string{
		"", "1.", "1)", "- ", "1. a\n   - b\n     c\n2. d", "3. x\n\n4. y\nz\n5. w",
		"\u202e1. a", "a\r\nb\rc", "\xff\xfe", "999. a\n1000. b", "<script>alert(1)</script>",
		"1. a\n  -", "- a\n  - \n  -\n    b",
	} {
		f.Add(s)
	}
	r, err := New()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s string) {
		bs := parseText(s)
		clean := func(what, x string) {
			if x == "" {
				t.Fatalf("empty %s in %q", what, show(bs))
			}
			if !utf8.ValidString(x) {
				t.Fatalf("%s %q is not valid UTF-8", what, x)
			}
			if x != strings.TrimSpace(x) {
				t.Fatalf("%s %q has surrounding space", what, x)
			}
			for _, c := range x {
				if c != '\t' && unicode.IsControl(c) || printable.Bidi(c) || c == '\u2028' || c == '\u2029' {
					t.Fatalf("%s %q keeps control %U", what, x, c)
				}
			}
		}
		for _, b := range bs {
			if (b.Para == "") == (len(b.Items) == 0) {
				t.Fatalf("block is neither a paragraph nor a list: %+v", b)
			}
			if b.Start < 0 || b.Start == 1 || b.Start > maxStepNumber || b.Start != 0 && !b.Ordered {
				t.Fatalf("bad start %d (ordered %v)", b.Start, b.Ordered)
			}
			if b.Para != "" {
				clean("paragraph", b.Para)
			}
			for _, it := range b.Items {
				if it.Text == "" && len(it.Points) == 0 {
					t.Fatalf("empty item in %q", show(bs))
				}
				if it.Text != "" {
					clean("step", it.Text)
				}
				for _, p := range it.Points {
					clean("point", p)
				}
			}
		}
		if again := parseText(s); show(again) != show(bs) {
			t.Fatal("parseText is not deterministic")
		}
		rec := httptest.NewRecorder()
		r.Denied(rec, http.StatusForbidden, Denied{Kind: KindPolicy, Failing: []Finding{{Name: "x", Status: "FAIL", UserText: s, Resolution: s}}})
		checkInert(t, "fuzz", rec.Body.String(), 0)
		checkFixElements(t, rec.Body.String())
	})
}
