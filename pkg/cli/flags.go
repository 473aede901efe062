package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// FlagSet is a command's flags: the standard library's FlagSet, plus what
// the help groups and shows them by.
//
// A flag's type word in the help is, in order: the kind given to Describe;
// the first `backquoted` word of its usage (flag.UnquoteUsage's rule, so
// "write the profile to this `path`" shows "path"); else its Go type
// (duration, int, string). Bool flags take no value and show none.
type FlagSet struct {
	*flag.FlagSet
	meta   map[string]*flagMeta
	group  string
	groups []string
}

type flagMeta struct {
	group, kind, note string
	claimed           bool
}

func newFlagSet(path string) *FlagSet {
	return Wrap(flag.NewFlagSet(path, flag.ContinueOnError))
}

// Wrap makes a FlagSet of an existing *flag.FlagSet. Its error output and
// usage function are silenced: errors come back from parsing instead.
func Wrap(fs *flag.FlagSet) *FlagSet {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &FlagSet{FlagSet: fs, meta: map[string]*flagMeta{}}
}

// GroupOrder is the order of a settings table's help groups: order, then
// each group a setting names (named, in the table's order) that order
// lacks, so a setting in a new group is never left out of the help.
func GroupOrder(order, named []string) []string {
	out := append([]string(nil), order...)
	seen := map[string]bool{}
	for _, g := range out {
		seen[g] = true
	}
	for _, g := range named {
		if !seen[g] {
			seen[g] = true
			out = append(out, g)
		}
	}
	return out
}

// Group puts the flags declared after it, until the next Group, under the
// heading name in the help.
func (f *FlagSet) Group(name string) {
	f.claim()
	f.group = name
}

// claim assigns every flag declared since the last Group to the current group.
func (f *FlagSet) claim() {
	f.VisitAll(func(fl *flag.Flag) {
		m := f.meta[fl.Name]
		if m == nil {
			m = &flagMeta{}
			f.meta[fl.Name] = m
		}
		if !m.claimed {
			m.group, m.claimed = f.group, true
			f.noteGroup(f.group)
		}
	})
}

func (f *FlagSet) noteGroup(g string) {
	for _, have := range f.groups {
		if have == g {
			return
		}
	}
	f.groups = append(f.groups, g)
}

// Describe sets what the help shows for flag name beyond its usage: its
// type word (empty keeps the default rule) and a note shown after the
// default, e.g. the plist key the same setting has.
func (f *FlagSet) Describe(name, kind, note string) {
	m := f.meta[name]
	if m == nil {
		m = &flagMeta{}
		f.meta[name] = m
	}
	m.kind, m.note = kind, note
}

// Given reports whether the flag was set on the command line.
func (f *FlagSet) Given(name string) bool {
	given := false
	f.Visit(func(fl *flag.Flag) {
		if fl.Name == name {
			given = true
		}
	})
	return given
}

// NotEmpty is a UsageError for each flag of names given on the command
// line with an empty value ("--device ”", "$ID" of a variable never
// set): a filter left empty would quietly filter nothing.
func (f *FlagSet) NotEmpty(names ...string) error {
	for _, name := range names {
		if fl := f.Lookup(name); fl != nil && f.Given(name) && strings.TrimSpace(fl.Value.String()) == "" {
			return Usagef("--%s is empty: give a value, or leave the flag out", name)
		}
	}
	return nil
}

// flagInfo is what the help prints of one flag.
type flagInfo struct {
	name, kind, usage, def, note string
	isBool                       bool
}

type boolFlag interface{ IsBoolFlag() bool }

// info returns the flags by group, each group's in name order (as the flag
// package visits them); f.groups keeps the groups' declaration order.
func (f *FlagSet) info() map[string][]flagInfo {
	f.claim()
	out := map[string][]flagInfo{}
	f.VisitAll(func(fl *flag.Flag) {
		m := f.meta[fl.Name]
		kind, usage := flag.UnquoteUsage(fl)
		isBool := false
		if b, ok := fl.Value.(boolFlag); ok && b.IsBoolFlag() {
			isBool, kind = true, ""
		}
		if m.kind != "" && !isBool {
			kind = m.kind
		}
		// A duration's default reads as one whatever its type word.
		defKind := kind
		if _, ok := fl.Value.(*durationValue); ok {
			defKind = "duration"
		}
		out[m.group] = append(out[m.group], flagInfo{
			name: fl.Name, kind: kind, usage: usage, def: displayDefault(fl.DefValue, defKind, isBool), note: m.note, isBool: isBool,
		})
	})
	return out
}

// displayDefault is the default as the help shows it: none for empty and
// zero values, and durations without trailing zero units (24h, not 24h0m0s).
func displayDefault(def, kind string, isBool bool) string {
	switch {
	case def == "", isBool && def == "false", def == "0" && kind == "int", def == "0s" && kind == "duration":
		return ""
	case kind == "duration":
		// time.Duration's String: 24h0m0s, 5m0s, 1h30m0s.
		if strings.HasSuffix(def, "m0s") {
			def = strings.TrimSuffix(def, "0s")
		}
		if strings.HasSuffix(def, "h0m") {
			def = strings.TrimSuffix(def, "0m")
		}
	}
	return def
}

// parse parses args, flags and positional arguments in any order ("--"
// ends the flags), and returns the positional arguments. Errors are one
// line, in the --flag form the help uses.
func (f *FlagSet) parse(args []string) ([]string, error) {
	var pos []string
	for {
		if err := f.Parse(args); err != nil {
			return nil, f.translate(err)
		}
		rest := f.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// translate rewrites the flag package's messages.
func (f *FlagSet) translate(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return err
	}
	msg := err.Error()
	const (
		undefined = "flag provided but not defined: -"
		needs     = "flag needs an argument: -"
		invalid   = "invalid value "
		boolean   = "invalid boolean value "
	)
	switch {
	case strings.HasPrefix(msg, undefined):
		name := strings.TrimPrefix(msg, undefined)
		out := "unknown flag --" + name
		var known []string
		f.VisitAll(func(fl *flag.Flag) { known = append(known, "--"+fl.Name) })
		if s := Suggest("--"+name, known); s != "" {
			out += "; did you mean " + s + "?"
		}
		return errors.New(out)
	case strings.HasPrefix(msg, needs):
		return fmt.Errorf("--%s needs a value", strings.TrimPrefix(msg, needs))
	case strings.HasPrefix(msg, invalid), strings.HasPrefix(msg, boolean):
		// invalid value "x" for flag -name: why; invalid boolean value "x" for -name: why
		msg = strings.Replace(msg, " for flag -", " for -", 1)
		return errors.New(strings.Replace(msg, " for -", " for --", 1))
	}
	return errors.New(msg)
}
