package policy

import (
	"fmt"
	"sort"
	"strings"
)

// maxErrors caps how many problems one Parse reports; a hostile or badly
// broken file could otherwise produce a message (and allocations) as large
// as itself.
const maxErrors = 100

// Error is one problem in a policy file.
type Error struct {
	File string
	// Line and Col are 1-based; 0 means unknown (YAML syntax errors carry
	// a line but no column; whole-file problems carry neither).
	Line, Col int
	Msg       string
}

func (e Error) Error() string {
	switch {
	case e.Line == 0:
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	case e.Col == 0:
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	default:
		return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
	}
}

// Errors is every problem found in a policy file, in file order.
type Errors []Error

// Error joins the problems one per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap exposes each problem to errors.As and errors.Is.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// finish orders the problems by position and notes how many more there
// were. Problems are found roughly in file order, so the first maxErrors
// found are the ones worth showing.
func (es Errors) finish(dropped int) Errors {
	sort.SliceStable(es, func(i, j int) bool {
		if es[i].Line != es[j].Line {
			return es[i].Line < es[j].Line
		}
		return es[i].Col < es[j].Col
	})
	if dropped > 0 && len(es) > 0 {
		last := es[len(es)-1]
		es = append(es, Error{
			File: last.File, Line: last.Line, Col: last.Col,
			Msg: fmt.Sprintf("too many errors (%d more not shown)", dropped),
		})
	}
	return es
}
