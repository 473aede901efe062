package config

import (
	"fmt"
	"io"
	"strings"
)

// WriteReference writes every serve setting as Markdown, grouped as the
// help groups them, each with its flag, environment variable, config-file
// key, type and default: docs/settings.md is this output (a test keeps it
// current), so the docs state the defaults the code uses.
func WriteReference(w io.Writer) error {
	var b strings.Builder
	b.WriteString("# clearance-verifier settings\n\n")
	b.WriteString("Every setting of `clearance-verifier serve`, from the same table as `serve -h`. Each has a\n")
	b.WriteString("flag, a `CLEARANCE_*` environment variable and a key in the YAML file given with `--config`;\n")
	b.WriteString("a flag wins over the environment, the environment over the file, the file over the default.\n")
	b.WriteString("`SIGHUP` re-reads the settings file: a changed `enforcement` takes effect at once, unless a flag or\n")
	b.WriteString("variable sets it; any other setting changed there is logged and waits for a restart\n")
	b.WriteString("([operations.md](operations.md#what-sighup-reloads)).\n")
	b.WriteString("This page is generated from the code (`go test ./verifier/config -run TestReference -update`).\n")
	for _, g := range groupOrder {
		var rows []setting
		for _, s := range settings {
			if s.group == g {
				rows = append(rows, s)
			}
		}
		if len(rows) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n## %s\n\n| flag | environment | config key | type | default | what it does |\n|---|---|---|---|---|---|\n", g)
		for _, s := range rows {
			def := "—"
			if s.def != "" {
				def = "`" + s.def + "`"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", cell("`--"+s.name+"`"), cell("`"+s.env()+"`"), cell("`"+s.key()+"`"), cell(s.val.kind), cell(def), cell(s.usage))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// cell escapes a table cell's pipes: a type such as auto|known|manual would
// otherwise split into cells of its own and shift the default and the
// description out of their columns.
func cell(s string) string {
	return strings.ReplaceAll(s, "|", `\|`)
}
