// Package cli owns how clearance-verifier and clearance-agent talk to a
// person on the command line: the command tree, help grouped by purpose with
// each flag's type and default, one-line usage errors that suggest what was
// meant, exit codes, and the version line.
//
// Exit codes: 0 for success and for help; 1 when a command fails; 2 for a
// usage error (unknown command or flag, a bad flag value, wrong arguments);
// 3 and up, a command's own (ExitCode).
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// Exit codes.
const (
	ExitOK    = 0
	ExitFail  = 1
	ExitUsage = 2
)

// Action runs a command with its positional arguments, after its flags are parsed.
type Action func(ctx context.Context, args []string) error

// Command is one command: a leaf with Flags, or a group of Commands. A leaf
// may have Commands too (`devices` lists, `devices pending` is another
// command): a first argument that names one of them runs it.
type Command struct {
	Name string
	// Summary is one line, shown in the parent's list of commands.
	Summary string
	// Args names the positional arguments in the usage line, e.g. "ID".
	// Empty means the command takes none. A lone "help" always asks for help.
	Args string
	// Doc is shown under the usage line: what the command does, in a few
	// sentences. Paragraphs are separated by blank lines and re-wrapped.
	Doc string
	// Flags declares the leaf's flags on fs and returns the action that
	// runs it. It is also called, without running the action, to print help.
	Flags func(fs *FlagSet) Action
	// Commands are a group's subcommands.
	Commands []*Command
	// Footer is printed at the end of the leaf's help, e.g. where settings
	// come from besides flags.
	Footer string
}

// Program is a binary's command tree.
type Program struct {
	Name string
	// Summary is the first line of the top-level help.
	Summary string
	// Version is printed by `version` and --version (see BuildInfo).
	Version  string
	Commands []*Command
	Stdout   io.Writer
	Stderr   io.Writer
}

// UsageError is a mistake in how a command was called. Run prints it on one
// line, with where to find the command's help, and exits 2.
type UsageError struct {
	Msg string
	// Path is the command the help hint names ("" for the top level); filled
	// in by Execute when empty.
	Path string
}

func (e *UsageError) Error() string { return e.Msg }

// Usagef makes a UsageError.
func Usagef(format string, args ...any) error {
	return &UsageError{Msg: fmt.Sprintf(format, args...)}
}

// ErrReported fails a command that has already said why (e.g. a table of
// failing checks): Run exits 1 without printing anything more.
var ErrReported = errors.New("failed")

// ExitCode ends a command that has said all it has to say with a code of
// its own, for scripts to read (status's standing, say): Run prints
// nothing more and exits with it. 1 and 2 keep their meaning for every
// command, so a command's own codes are 3 and up.
type ExitCode int

func (c ExitCode) Error() string { return fmt.Sprintf("exit status %d", int(c)) }

// NoArgs is a UsageError when a command that takes no arguments got some.
func NoArgs(args []string) error {
	if len(args) > 0 {
		return Usagef("unexpected argument %q", args[0])
	}
	return nil
}

// ExactArgs is a UsageError unless there are n arguments; what names them.
func ExactArgs(args []string, n int, what string) error {
	if len(args) != n {
		return Usagef("needs exactly %d argument%s: %s (got %d)", n, plural(n), what, len(args))
	}
	return nil
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// Run executes args (without the program name) and returns the exit code,
// having printed any error as one line on Stderr.
func (p *Program) Run(ctx context.Context, args []string) int {
	err := p.Execute(ctx, args)
	return p.Report(err)
}

// Report prints err as Run does and returns its exit code.
func (p *Program) Report(err error) int {
	if err == nil {
		return ExitOK
	}
	var code ExitCode
	if errors.As(err, &code) {
		return int(code)
	}
	if errors.Is(err, ErrReported) {
		return ExitFail
	}
	var ue *UsageError
	if errors.As(err, &ue) {
		fmt.Fprintf(p.Stderr, "%s: %s (see '%s -h')\n", p.join(ue.Path), oneLine(ue.Msg), p.join(ue.Path))
		return ExitUsage
	}
	var ce *commandError
	if errors.As(err, &ce) {
		fmt.Fprintf(p.Stderr, "%s: %s\n", p.join(ce.path), ce.err)
		return ExitFail
	}
	fmt.Fprintf(p.Stderr, "%s: %s\n", p.Name, err)
	return ExitFail
}

// commandError is a leaf's own failure, remembered with the command's path
// so Report can name it.
type commandError struct {
	path string
	err  error
}

func (e *commandError) Error() string { return e.err.Error() }
func (e *commandError) Unwrap() error { return e.err }

func (p *Program) join(path string) string {
	if path == "" {
		return p.Name
	}
	return p.Name + " " + path
}

// oneLine keeps an error on one line: flag and config messages never hold
// newlines, but a joined error might.
func oneLine(s string) string { return strings.ReplaceAll(strings.TrimSpace(s), "\n", "; ") }

func isHelp(a string) bool { return a == "-h" || a == "--help" || a == "-help" || a == "help" }

func isVersion(a string) bool { return a == "--version" || a == "-version" || a == "version" }

// Execute runs args and returns the command's error without printing it;
// help and the version are printed to Stdout and return nil.
func (p *Program) Execute(ctx context.Context, args []string) error {
	root := &Command{Commands: p.Commands}
	if len(args) == 0 {
		p.printGroupHelp(p.Stderr, root, "")
		return &UsageError{Msg: "no command given"}
	}
	switch {
	case isVersion(args[0]) && len(args) == 1:
		fmt.Fprintln(p.Stdout, p.Version)
		return nil
	case isVersion(args[0]) && len(args) == 2 && isHelp(args[1]):
		p.printVersionHelp()
		return nil
	case isVersion(args[0]):
		return &UsageError{Msg: fmt.Sprintf("%s takes no arguments", args[0])}
	case args[0] == "help":
		return p.help(args[1:])
	}
	return p.exec(ctx, root, "", args)
}

// printVersionHelp is `version -h` and `help version`.
func (p *Program) printVersionHelp() {
	fmt.Fprintf(p.Stdout, "usage: %s version\n\nPrints the version, commit and Go version (also --version).\n", p.Name)
}

// help prints the help of the command that path names: `help secret create`.
func (p *Program) help(path []string) error {
	if len(path) > 0 && isVersion(path[0]) {
		if len(path) > 1 {
			return &UsageError{Msg: fmt.Sprintf("%s has no commands", path[0])}
		}
		p.printVersionHelp()
		return nil
	}
	cmd, name := &Command{Commands: p.Commands}, ""
	for _, w := range path {
		sub, err := p.find(cmd, name, w)
		if err != nil {
			return err
		}
		cmd, name = sub, join(name, sub.Name)
	}
	p.printHelp(p.Stdout, cmd, name)
	return nil
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + " " + name
}

func (p *Program) find(group *Command, path, name string) (*Command, error) {
	for _, c := range group.Commands {
		if c.Name == name {
			return c, nil
		}
	}
	if strings.HasPrefix(name, "-") {
		// Groups take no flags but -h; the top level also --version.
		known := []string{"--help"}
		if path == "" {
			known = append(known, "--version")
		}
		msg := "unknown flag " + name
		if s := Suggest(name, known); s != "" {
			msg += "; did you mean " + s + "?"
		} else {
			msg += "; flags go after the command"
		}
		return nil, &UsageError{Msg: msg, Path: path}
	}
	candidates := names(group)
	if path == "" {
		candidates = append(candidates, "help", "version")
	}
	msg := fmt.Sprintf("unknown command %q", name)
	if s := Suggest(name, candidates); s != "" {
		msg += "; did you mean " + s + "?"
	} else {
		msg += "; " + p.choices(group, path)
	}
	return nil, &UsageError{Msg: msg, Path: path}
}

func (p *Program) choices(group *Command, path string) string {
	var names []string
	for _, c := range group.Commands {
		names = append(names, c.Name)
	}
	if path == "" {
		return "the commands are " + listWords(names)
	}
	return path + "'s commands are " + listWords(names)
}

// listWords joins words as "a, b or c".
func listWords(w []string) string {
	switch len(w) {
	case 0:
		return ""
	case 1:
		return w[0]
	}
	return strings.Join(w[:len(w)-1], ", ") + " or " + w[len(w)-1]
}

func (p *Program) exec(ctx context.Context, cmd *Command, path string, args []string) error {
	if cmd.Flags == nil {
		// A group: the next word names a subcommand.
		if len(args) == 0 {
			what := path
			if what == "" {
				what = p.Name
			}
			return &UsageError{Msg: what + " needs a command: " + listWords(names(cmd)), Path: path}
		}
		if isHelp(args[0]) {
			p.printHelp(p.Stdout, cmd, path)
			return nil
		}
		sub, err := p.find(cmd, path, args[0])
		if err != nil {
			return err
		}
		return p.exec(ctx, sub, join(path, sub.Name), args[1:])
	}

	if len(args) > 0 {
		for _, sub := range cmd.Commands {
			if sub.Name == args[0] {
				return p.exec(ctx, sub, join(path, sub.Name), args[1:])
			}
		}
	}
	fs := newFlagSet(path)
	action := cmd.Flags(fs)
	if len(args) == 1 && args[0] == "help" {
		p.printHelp(p.Stdout, cmd, path)
		return nil
	}
	pos, err := fs.parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		p.printHelp(p.Stdout, cmd, path)
		return nil
	case err != nil:
		return &UsageError{Msg: err.Error(), Path: path}
	}
	if cmd.Args == "" {
		if err := NoArgs(pos); err != nil {
			return &UsageError{Msg: err.Error(), Path: path}
		}
	}
	if err := action(ctx, pos); err != nil {
		var ue *UsageError
		if errors.As(err, &ue) {
			if ue.Path == "" {
				ue.Path = path
			}
			return err
		}
		if errors.Is(err, ErrReported) {
			return err
		}
		return &commandError{path: path, err: err}
	}
	return nil
}

func names(group *Command) []string {
	var out []string
	for _, c := range group.Commands {
		out = append(out, c.Name)
	}
	return out
}
