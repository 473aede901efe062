package cli

import (
	"fmt"
	"io"
	"strings"
)

// Width is the column help text is wrapped at: an 80-column terminal.
const Width = 80

// descColumn is the widest the flag-name column of the help may be before
// descriptions move to their own lines.
const descColumn = 30

func (p *Program) printHelp(w io.Writer, cmd *Command, path string) {
	if cmd.Flags == nil {
		p.printGroupHelp(w, cmd, path)
		return
	}
	b := &strings.Builder{}
	usage := "Usage: " + p.join(path) + " [flags]"
	if cmd.Args != "" {
		usage += " " + cmd.Args
	}
	b.WriteString(usage + "\n")
	if doc := cmd.Doc; doc != "" {
		b.WriteString("\n" + wrapParagraphs(doc, Width, "") + "\n")
	} else if cmd.Summary != "" {
		b.WriteString("\n" + wrapParagraphs(capitalize(cmd.Summary)+".", Width, "") + "\n")
	}
	fs := newFlagSet(path)
	cmd.Flags(fs)
	info := fs.info()
	width := 0
	for _, g := range fs.groups {
		for _, fl := range info[g] {
			width = max(width, len(flagLeft(fl)))
		}
	}
	col := min(width+2, descColumn)
	for _, g := range fs.groups {
		if len(info[g]) == 0 {
			continue
		}
		title := g
		if title == "" {
			title = "Flags"
		}
		b.WriteString("\n" + title + ":\n")
		for _, fl := range info[g] {
			writeFlag(b, fl, col)
		}
	}
	if len(cmd.Commands) > 0 {
		b.WriteString("\nCommands:\n")
		width := 0
		for _, c := range cmd.Commands {
			width = max(width, len(c.Name))
		}
		for _, c := range cmd.Commands {
			lines := WrapText(c.Summary, Width-width-5)
			if len(lines) == 0 {
				lines = []string{""}
			}
			fmt.Fprintf(b, "  %-*s   %s\n", width, c.Name, lines[0])
			for _, l := range lines[1:] {
				b.WriteString(strings.Repeat(" ", width+5) + l + "\n")
			}
		}
	}
	if cmd.Footer != "" {
		b.WriteString("\n" + wrapParagraphs(cmd.Footer, Width, "") + "\n")
	}
	io.WriteString(w, b.String())
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func flagLeft(fl flagInfo) string {
	s := "  --" + fl.name
	if fl.kind != "" {
		s += " " + fl.kind
	}
	return s
}

func writeFlag(b *strings.Builder, fl flagInfo, col int) {
	left := flagLeft(fl)
	desc := fl.usage
	var extra []string
	switch {
	case fl.isBool && fl.def == "true":
		extra = append(extra, "default true; --"+fl.name+"=false turns it off")
	case fl.def != "":
		extra = append(extra, "default "+fl.def)
	}
	if fl.note != "" {
		extra = append(extra, fl.note)
	}
	if len(extra) > 0 {
		desc += " (" + strings.Join(extra, "; ") + ")"
	}
	lines := WrapText(desc, Width-col)
	indent := strings.Repeat(" ", col)
	if len(left)+2 > col {
		b.WriteString(left + "\n")
	} else {
		b.WriteString(left + strings.Repeat(" ", col-len(left)))
		if len(lines) > 0 {
			b.WriteString(lines[0])
			lines = lines[1:]
		}
		b.WriteString("\n")
	}
	for _, l := range lines {
		b.WriteString(indent + l + "\n")
	}
}

func (p *Program) printGroupHelp(w io.Writer, group *Command, path string) {
	b := &strings.Builder{}
	if path == "" && p.Summary != "" {
		b.WriteString(wrapParagraphs(p.Summary, Width, "") + "\n\n")
	}
	fmt.Fprintf(b, "Usage: %s <command> [flags]\n", p.join(path))
	if group.Doc != "" {
		b.WriteString("\n" + wrapParagraphs(group.Doc, Width, "") + "\n")
	} else if path != "" && group.Summary != "" {
		b.WriteString("\n" + wrapParagraphs(capitalize(group.Summary)+".", Width, "") + "\n")
	}
	type row struct{ name, summary string }
	var rows []row
	for _, c := range group.Commands {
		rows = append(rows, row{c.Name, c.Summary})
	}
	if path == "" {
		rows = append(rows, row{"version", "print the version, commit and Go version (also --version)"},
			row{"help", "show a command's help: help COMMAND… (also -h on any command)"})
	}
	width := 0
	for _, r := range rows {
		width = max(width, len(r.name))
	}
	col := 2 + width + 3
	b.WriteString("\nCommands:\n")
	for _, r := range rows {
		lines := WrapText(r.summary, Width-col)
		if len(lines) == 0 {
			lines = []string{""}
		}
		fmt.Fprintf(b, "  %-*s   %s\n", width, r.name, lines[0])
		for _, l := range lines[1:] {
			b.WriteString(strings.Repeat(" ", col) + l + "\n")
		}
	}
	fmt.Fprintf(b, "\nRun '%s <command> -h' for a command's flags.\n", p.join(path))
	io.WriteString(w, b.String())
}

// wrapParagraphs re-wraps text whose paragraphs are separated by blank
// lines. Lines that start with a space are kept as they are (examples).
func wrapParagraphs(text string, width int, indent string) string {
	var out []string
	for _, para := range strings.Split(strings.TrimSpace(text), "\n\n") {
		var lines []string
		var words []string
		flush := func() {
			if len(words) > 0 {
				for _, l := range WrapText(strings.Join(words, " "), width-len(indent)) {
					lines = append(lines, indent+l)
				}
				words = nil
			}
		}
		for _, l := range strings.Split(para, "\n") {
			if strings.HasPrefix(l, " ") {
				flush()
				lines = append(lines, indent+l)
				continue
			}
			words = append(words, strings.Fields(l)...)
		}
		flush()
		out = append(out, strings.Join(lines, "\n"))
	}
	return strings.Join(out, "\n\n")
}

// WrapText breaks text into lines of at most width characters (runes), at
// spaces; a word longer than width gets a line of its own.
func WrapText(text string, width int) []string {
	var lines []string
	line := ""
	for _, w := range strings.Fields(text) {
		switch {
		case line == "":
			line = w
		case runeLen(line)+1+runeLen(w) <= width:
			line += " " + w
		default:
			lines = append(lines, line)
			line = w
		}
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}

func runeLen(s string) int { return len([]rune(s)) }
