package browser

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/chromedp/chromedp"
	"github.com/clearance/clearance/internal/testkit"
)

// axePath is axe-core's browser build as scripts/npm.sh installs it (the
// exact version is in scripts/npm/package-lock.json).
const axePath = "scripts/npm/node_modules/axe-core/axe.min.js"

var axeSource = sync.OnceValues(func() (string, error) {
	root, err := testkit.ModuleRoot()
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(filepath.Join(root, axePath))
	return string(b), err
})

// Violation is one axe-core rule the page breaks.
type Violation struct {
	ID          string // the rule, such as "color-contrast"
	Impact      string // minor, moderate, serious or critical
	Help        string
	HelpURL     string
	Description string
	Nodes       []ViolationNode
}

// ViolationNode is one element that breaks the rule.
type ViolationNode struct {
	Target  []string // CSS selectors that find it
	HTML    string
	Summary string // what to fix
}

func (v Violation) String() string {
	var s strings.Builder
	fmt.Fprintf(&s, "%s %s: %s (%s)", v.Impact, v.ID, v.Help, v.HelpURL)
	for _, n := range v.Nodes {
		fmt.Fprintf(&s, "\n    %s  %s", strings.Join(n.Target, " "), n.HTML)
		for _, line := range strings.Split(n.Summary, "\n") {
			if line = strings.TrimSpace(line); line != "" {
				fmt.Fprintf(&s, "\n      %s", line)
			}
		}
	}
	return s.String()
}

// Blocking reports whether the violation fails CheckAccessibility.
func (v Violation) Blocking() bool {
	return v.Impact == "serious" || v.Impact == "critical"
}

// axeRun runs every axe-core rule on the document and returns the
// violations in a shape that decodes into []Violation.
const axeRun = `axe.run(document, {resultTypes: ['violations']}).then(r => r.violations.map(v => ({
	ID: v.id, Impact: v.impact || '', Help: v.help, HelpURL: v.helpUrl, Description: v.description,
	Nodes: v.nodes.map(n => ({
		Target: n.target.map(t => Array.isArray(t) ? t.join(' >>> ') : String(t)),
		HTML: n.html, Summary: n.failureSummary || '',
	})),
})))`

// Accessibility runs axe-core on the page that shows and returns every
// violation. It runs with the page's scripts off too.
func (b *Browser) Accessibility() []Violation {
	b.t.Helper()
	src, err := axeSource()
	if err != nil {
		testkit.Missing(b.t, "axe-core not found (%v): scripts/npm.sh (make test runs it) installs it", err)
	}
	ctx, cancel := b.action()
	defer cancel()
	if b.noJS {
		// axe-core waits on timers, which do not fire while the page's
		// scripts are off. The page's own scripts, which never ran, do
		// not run now either.
		if err := chromedp.Do(ctx, setScripts(true)); err != nil {
			b.t.Fatal(err)
		}
		defer func() {
			if err := chromedp.Do(ctx, setScripts(false)); err != nil {
				b.t.Fatal(err)
			}
		}()
	}
	if _, err := chromedp.Run(ctx, chromedp.EvaluateAsDevTools[chromedp.Void](src)); err != nil {
		b.t.Fatalf("injecting axe-core: %v", err)
	}
	vs, err := chromedp.Run(ctx, chromedp.EvaluateAsDevTools[[]Violation](axeRun, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("running axe-core: %v", err)
	}
	return vs
}

// CheckAccessibility fails the test when axe-core finds serious or critical
// violations on the page that shows, listing each with its elements; it
// logs the minor and moderate ones. It returns every violation.
func (b *Browser) CheckAccessibility() []Violation {
	b.t.Helper()
	vs := b.Accessibility()
	var blocking, other []string
	for _, v := range vs {
		if v.Blocking() {
			blocking = append(blocking, v.String())
		} else {
			other = append(other, v.String())
		}
	}
	if len(other) > 0 {
		b.t.Logf("axe-core: %d minor or moderate violation(s) on %s:\n%s", len(other), b.URL(), strings.Join(other, "\n"))
	}
	if len(blocking) > 0 {
		b.t.Errorf("axe-core: %d serious or critical violation(s) on %s:\n%s", len(blocking), b.URL(), strings.Join(blocking, "\n"))
	}
	return vs
}
