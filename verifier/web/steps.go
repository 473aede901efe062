package web

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/clearance/clearance/pkg/printable"
)

// A policy's user text and resolution are plain text written in a YAML
// block by the security team. parseText turns one into the blocks a page
// shows, by these rules (docs/policies.md says the same for authors):
//
//   - A line starting with a number of one to three digits, then "." or ")",
//     then a space ("1. Open System Settings.") starts a numbered step. The
//     steps in a row form one list, numbered as the browser counts; a list
//     that does not start at 1 keeps its first number.
//   - A line starting with "- ", "* " or "• " starts a bullet point; the
//     points in a row form one list.
//   - An indented line below a step or point continues it (the text is
//     joined with a space), unless it starts with "- ", "* " or "• ": then
//     it is a point within that step. Indented lines below such a point
//     continue the point.
//   - A blank line between items of the same list keeps the list going.
//   - Any other line is text: lines in a row are joined into one paragraph
//     (a YAML block's wrapped lines read as one sentence), and a blank line
//     or a list ends the paragraph.
//
// Nothing in the text is markup: html/template escapes every block, so
// "<b>" shows as typed. Text longer than maxTextBytes is cut there and
// ends with "…". Control characters and the Unicode controls that reorder
// text (which could make a step read differently on screen than in the
// file) are dropped; invalid UTF-8 becomes U+FFFD.

// maxTextBytes bounds the text parseText reads: four times the policy
// loader's limit on a resolution, so only text that did not come through
// the loader is ever cut.
const maxTextBytes = 16 << 10

// maxStepNumber is the largest first step number kept as the list's start.
const maxStepNumber = 999

// block is one paragraph or list of a policy's text on the page.
type block struct {
	// Para is a paragraph's text; empty for a list.
	Para string
	// Ordered lists are numbered steps (<ol>); the others bullet points.
	Ordered bool
	// Start is the first step's number when it is not 1, else 0.
	Start int
	Items []item
}

// item is one step or bullet point.
type item struct {
	Text string
	// Points are the bullet points within a step.
	Points []string
}

// parseText splits untrusted text into blocks by the rules above.
func parseText(s string) []block {
	p := textParser{}
	for _, line := range strings.Split(clean(s), "\n") {
		p.line(line)
	}
	p.endPara()
	p.endList()
	return p.out
}

type textParser struct {
	out  []block
	para []string // lines of the open paragraph
	list *block   // the open list
}

func (p *textParser) line(raw string) {
	line := strings.TrimRightFunc(raw, unicode.IsSpace)
	text := strings.TrimLeftFunc(line, unicode.IsSpace)
	indented := len(text) < len(line)
	if text == "" {
		// A list stays open: the next line decides whether it goes on.
		p.endPara()
		return
	}
	if !indented {
		if n, rest, ok := stepMarker(text); ok {
			p.item(true, n, rest)
			return
		}
		if rest, ok := pointMarker(text); ok {
			p.item(false, 0, rest)
			return
		}
	}
	if indented && p.list != nil {
		last := &p.list.Items[len(p.list.Items)-1]
		if rest, ok := pointMarker(text); ok {
			last.Points = append(last.Points, rest)
			return
		}
		if n := len(last.Points); n > 0 {
			last.Points[n-1] = join(last.Points[n-1], text)
		} else {
			last.Text = join(last.Text, text)
		}
		return
	}
	p.endList()
	p.para = append(p.para, text)
}

// item adds a step (ordered) or point to the open list, or opens one.
func (p *textParser) item(ordered bool, n int, text string) {
	p.endPara()
	if p.list != nil && p.list.Ordered != ordered {
		p.endList()
	}
	if p.list == nil {
		p.list = &block{Ordered: ordered}
		if ordered && n != 1 && n <= maxStepNumber {
			p.list.Start = n
		}
	}
	p.list.Items = append(p.list.Items, item{Text: text})
}

func (p *textParser) endPara() {
	if len(p.para) > 0 {
		p.out = append(p.out, block{Para: strings.Join(p.para, " ")})
		p.para = nil
	}
}

func (p *textParser) endList() {
	if p.list == nil {
		return
	}
	// A step or point left empty ("3." or "-" alone on its line, nothing
	// below it) is dropped rather than shown as a bare number or bullet.
	items := p.list.Items[:0]
	for _, it := range p.list.Items {
		points := it.Points[:0]
		for _, pt := range it.Points {
			if pt != "" {
				points = append(points, pt)
			}
		}
		it.Points = points
		if it.Text != "" || len(it.Points) > 0 {
			items = append(items, it)
		}
	}
	if len(items) > 0 {
		p.list.Items = items
		p.out = append(p.out, *p.list)
	}
	p.list = nil
}

// stepMarker reads "12. rest" or "12) rest": one to three digits, "." or
// ")", then a space or the end of the line.
func stepMarker(s string) (n int, rest string, ok bool) {
	i := 0
	for i < len(s) && i < 4 && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 || i > 3 || i >= len(s) || (s[i] != '.' && s[i] != ')') {
		return 0, "", false
	}
	after := s[i+1:]
	if after != "" && after[0] != ' ' && after[0] != '\t' {
		return 0, "", false // "14.6 or later", "1.5x"
	}
	n, _ = strconv.Atoi(s[:i])
	return n, strings.TrimLeftFunc(after, unicode.IsSpace), true
}

// pointMarker reads "- rest", "* rest" or "• rest".
func pointMarker(s string) (rest string, ok bool) {
	for _, m := range []string{"-", "*", "•"} {
		if after, found := strings.CutPrefix(s, m); found && (after == "" || after[0] == ' ' || after[0] == '\t') {
			return strings.TrimLeftFunc(after, unicode.IsSpace), true
		}
	}
	return "", false
}

func join(a, b string) string {
	if a == "" {
		return b
	}
	return a + " " + b
}

// clean bounds s, makes it valid UTF-8 with "\n" line ends, and drops
// control characters (tabs kept, as indentation) and the Unicode
// bidirectional controls.
func clean(s string) string {
	cut := false
	if len(s) > maxTextBytes {
		i := maxTextBytes
		for i > 0 && !utf8.RuneStart(s[i]) {
			i--
		}
		s, cut = s[:i], true
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	s = strings.Map(func(r rune) rune {
		switch {
		case r == '\n' || r == '\t':
			return r
		case unicode.IsControl(r), printable.Bidi(r):
			return -1
		case r == '\u2028' || r == '\u2029': // Unicode's own line and paragraph separators
			return '\n'
		}
		return r
	}, s)
	if cut {
		s = strings.TrimRightFunc(s, unicode.IsSpace) + "…"
	}
	return s
}
