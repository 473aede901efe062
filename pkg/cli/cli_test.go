package cli

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

// testProgram has a group, a leaf with every kind of flag and a leaf that
// takes an argument; run records what the leaves were called with.
func testProgram(out, errOut *bytes.Buffer, got *[]string) *Program {
	return &Program{
		Name: "tool", Summary: "tool does things.", Version: "tool 1.0",
		Stdout: out, Stderr: errOut,
		Commands: []*Command{
			{
				Name: "serve", Summary: "serve things",
				Flags: func(fs *FlagSet) Action {
					fs.Group("Listeners")
					listen := fs.String("listen", ":8443", "where to listen, `host:port`")
					fs.Group("Timing")
					wait := fs.Duration("wait", 90*time.Second, "how long to wait")
					fs.Group("Other")
					on := fs.Bool("on", true, "whether it is on")
					n := fs.Int("count", 3, "how many")
					fs.Describe("count", "", "also COUNT in the environment")
					return func(_ context.Context, args []string) error {
						*got = append(*got, *listen, (*wait).String(), boolWord(*on), itoa(*n), strings.Join(args, ","))
						return nil
					}
				},
			},
			{
				Name: "thing", Summary: "things",
				Commands: []*Command{{
					Name: "remove", Summary: "remove a thing", Args: "ID",
					Flags: func(fs *FlagSet) Action {
						force := fs.Bool("force", false, "even if it is in use")
						return func(_ context.Context, args []string) error {
							if err := ExactArgs(args, 1, "the thing's ID"); err != nil {
								return err
							}
							if args[0] == "fail" {
								return errors.New("it would not go")
							}
							if args[0] == "quiet" {
								return ErrReported
							}
							if args[0] == "in-use" {
								return ExitCode(3)
							}
							*got = append(*got, args[0], boolWord(*force))
							return nil
						}
					},
				}},
			},
		},
	}
}

func boolWord(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func itoa(n int) string { return strconv.Itoa(n) }

func run(args ...string) (code int, stdout, stderr string, got []string) {
	var out, errOut bytes.Buffer
	code = testProgram(&out, &errOut, &got).Run(context.Background(), args)
	return code, out.String(), errOut.String(), got
}

func TestRun(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
		got    string
	}{
		{"defaults", []string{"serve"}, 0, "", "", ":8443,1m30s,true,3,"},
		{"flags", []string{"serve", "--listen", "127.0.0.1:1", "-wait=5s", "--on=false", "--count", "7"}, 0, "", "", "127.0.0.1:1,5s,false,7,"},
		{"flags after arguments", []string{"thing", "remove", "abc", "--force"}, 0, "", "", "abc,true"},
		{"double dash", []string{"thing", "remove", "--", "--force"}, 0, "", "", "--force,false"},
		{"version", []string{"--version"}, 0, "tool 1.0\n", "", ""},
		{"version word", []string{"version"}, 0, "tool 1.0\n", "", ""},
		{"version help", []string{"version", "-h"}, 0, "usage: tool version\n\nPrints the version, commit and Go version (also --version).\n", "", ""},
		{"help version", []string{"help", "version"}, 0, "usage: tool version\n\nPrints the version, commit and Go version (also --version).\n", "", ""},
		{"version with an argument", []string{"version", "now"}, 2, "", "tool: version takes no arguments (see 'tool -h')\n", ""},
		{"help version with more", []string{"help", "version", "x"}, 2, "", "tool: version has no commands (see 'tool -h')\n", ""},
		{"unknown flag", []string{"serve", "--lisen", "x"}, 2, "", "tool serve: unknown flag --lisen; did you mean --listen? (see 'tool serve -h')\n", ""},
		{"unknown flag, no suggestion", []string{"serve", "--zzzzzz"}, 2, "", "tool serve: unknown flag --zzzzzz (see 'tool serve -h')\n", ""},
		{"bad value", []string{"serve", "--wait", "soon"}, 2, "", `tool serve: invalid value "soon" for --wait: give a duration such as 90s, 30m, 24h or 7d (see 'tool serve -h')` + "\n", ""},
		{"bad bool", []string{"serve", "--on=maybe"}, 2, "", `tool serve: invalid boolean value "maybe" for --on: parse error (see 'tool serve -h')` + "\n", ""},
		{"missing value", []string{"serve", "--listen"}, 2, "", "tool serve: --listen needs a value (see 'tool serve -h')\n", ""},
		{"stray argument", []string{"serve", "x"}, 2, "", `tool serve: unexpected argument "x" (see 'tool serve -h')` + "\n", ""},
		{"unknown command", []string{"sevre"}, 2, "", `tool: unknown command "sevre"; did you mean serve? (see 'tool -h')` + "\n", ""},
		{"unknown subcommand", []string{"thing", "rm"}, 2, "", `tool thing: unknown command "rm"; thing's commands are remove (see 'tool thing -h')` + "\n", ""},
		{"group alone", []string{"thing"}, 2, "", "tool thing: thing needs a command: remove (see 'tool thing -h')\n", ""},
		{"flag before command", []string{"--listen", "x"}, 2, "", "tool: unknown flag --listen; flags go after the command (see 'tool -h')\n", ""},
		{"missing argument", []string{"thing", "remove"}, 2, "", "tool thing remove: needs exactly 1 argument: the thing's ID (got 0) (see 'tool thing remove -h')\n", ""},
		{"failure", []string{"thing", "remove", "fail"}, 1, "", "tool thing remove: it would not go\n", ""},
		{"reported failure", []string{"thing", "remove", "quiet"}, 1, "", "", ""},
		{"a code of the command's own", []string{"thing", "remove", "in-use"}, 3, "", "", ""},
		{"help of unknown", []string{"help", "nope"}, 2, "", `tool: unknown command "nope"; the commands are serve or thing (see 'tool -h')` + "\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr, got := run(tc.args...)
			if code != tc.code || stdout != tc.stdout || stderr != tc.stderr || strings.Join(got, ",") != tc.got {
				t.Errorf("exit %d, stdout %q, stderr %q, ran with %q\nwant exit %d, stdout %q, stderr %q, ran with %q",
					code, stdout, stderr, strings.Join(got, ","), tc.code, tc.stdout, tc.stderr, tc.got)
			}
		})
	}
}

func TestHelpText(t *testing.T) {
	t.Parallel()
	_, stdout, _, got := run("serve", "-h")
	want := `Usage: tool serve [flags]

Serve things.

Listeners:
  --listen host:port  where to listen, host:port (default :8443)

Timing:
  --wait duration     how long to wait (default 1m30s)

Other:
  --count int         how many (default 3; also COUNT in the environment)
  --on                whether it is on (default true; --on=false turns it off)
`
	if stdout != want {
		t.Errorf("help:\n%s\nwant:\n%s", stdout, want)
	}
	if len(got) != 0 {
		t.Error("help ran the command")
	}
	for _, args := range [][]string{{"help", "thing", "remove"}, {"thing", "remove", "--help"}, {"thing", "remove", "help"}, {"thing", "help", "remove"}} {
		code, stdout, stderr, _ := run(args...)
		if args[1] == "help" {
			// "thing help" asks for the group's help; "remove" is ignored.
			if code != 0 || !strings.Contains(stdout, "Commands:\n  remove") {
				t.Errorf("%v: exit %d, %q %q", args, code, stdout, stderr)
			}
			continue
		}
		if code != 0 || stderr != "" || !strings.HasPrefix(stdout, "Usage: tool thing remove [flags] ID\n") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, stdout, stderr)
		}
	}
}

func TestSuggest(t *testing.T) {
	t.Parallel()
	cands := []string{"--policies", "--public-url", "--data-dir", "--database"}
	for in, want := range map[string]string{
		"--polices":                 "--policies",
		"--polcies":                 "--policies",
		"--data_dir":                "--data-dir",
		"--databse":                 "--database",
		"--pub":                     "--public-url",
		"--x":                       "",
		"--zzzzzzz":                 "",
		"--":                        "",
		strings.Repeat("a", 100000): "",
	} {
		if got := Suggest(in, cands); got != want {
			t.Errorf("Suggest(%.20q) = %q, want %q", in, got, want)
		}
	}
}

func TestWrap(t *testing.T) {
	t.Parallel()
	lines := WrapText("one two three "+strings.Repeat("x", 30)+" four", 12)
	want := []string{"one two", "three", strings.Repeat("x", 30), "four"}
	if strings.Join(lines, "|") != strings.Join(want, "|") {
		t.Errorf("wrap = %q", lines)
	}
	if got := displayDefault("24h0m0s", "duration", false); got != "24h" {
		t.Errorf("displayDefault = %q", got)
	}
	if got := displayDefault("1m30s", "duration", false); got != "1m30s" {
		t.Errorf("displayDefault = %q", got)
	}
}

// FuzzRun: whatever the arguments, the program answers with 0, 1 or 2 and
// at most one line on stderr.
func FuzzRun(f *testing.F) {
	f.Add("serve\x00--listen\x00x")
	f.Add("thing\x00remove\x00--\x00-x")
	f.Add("help\x00thing\x00remove")
	f.Add("--\x00-\x00=\x00--=x")
	f.Fuzz(func(t *testing.T, joined string) {
		if len(joined) > 4096 {
			return
		}
		args := strings.Split(joined, "\x00")
		code, _, stderr, _ := run(args...)
		if code < 0 || code > 2 {
			t.Errorf("exit %d", code)
		}
		if args[0] != "" && strings.Count(strings.TrimSuffix(stderr, "\n"), "\n") > 0 && code != 2 {
			t.Errorf("more than one line: %q", stderr)
		}
	})
}

// A leaf with commands of its own runs itself, or the command its first
// argument names, and its help lists them.
func TestLeafWithCommands(t *testing.T) {
	var out, errOut bytes.Buffer
	var got []string
	leaf := func(name string) func(fs *FlagSet) Action {
		return func(fs *FlagSet) Action {
			v := fs.String("v", "", "a value")
			return func(_ context.Context, args []string) error {
				got = append(got, name+":"+*v+":"+strings.Join(args, ","))
				return nil
			}
		}
	}
	p := &Program{Name: "tool", Stdout: &out, Stderr: &errOut, Commands: []*Command{{
		Name: "devices", Summary: "list devices", Args: "[FILTER]", Flags: leaf("devices"),
		Commands: []*Command{{Name: "pending", Summary: "requests waiting for approval", Args: "[X]", Flags: leaf("pending")}},
	}}}
	for _, args := range [][]string{{"devices", "--v", "a"}, {"devices", "pending", "--v", "b", "x"}, {"devices", "--v", "c", "pending"}} {
		if err := p.Execute(context.Background(), args); err != nil {
			t.Fatalf("%q: %v", args, err)
		}
	}
	want := []string{"devices:a:", "pending:b:x", "devices:c:pending"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("ran %q, want %q", got, want)
	}
	if err := p.Execute(context.Background(), []string{"devices", "--help"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "Commands:\n  pending   requests waiting for approval") {
		t.Errorf("help does not list the subcommand:\n%s", out.String())
	}
}

func TestGroupOrder(t *testing.T) {
	got := GroupOrder([]string{"Network", "Storage"}, []string{"Storage", "Limits", "Network", "Limits", "Okta"})
	if want := "Network Storage Limits Okta"; strings.Join(got, " ") != want {
		t.Errorf("GroupOrder = %v, want %s", got, want)
	}
}

// NotEmpty refuses a flag given with an empty or blank value, and lets one
// left out or given a value through.
func TestNotEmpty(t *testing.T) {
	for _, tc := range []struct {
		args []string
		bad  bool
	}{
		{nil, false},
		{[]string{"--device", "3f2a"}, false},
		{[]string{"--device", ""}, true},
		{[]string{"--device= "}, true},
		{[]string{"--user", "bob", "--device", ""}, true},
	} {
		fs := newFlagSet("t")
		fs.String("device", "", "")
		fs.String("user", "", "")
		if _, err := fs.parse(tc.args); err != nil {
			t.Fatal(err)
		}
		err := fs.NotEmpty("device", "user", "missing")
		if (err != nil) != tc.bad || err != nil && !strings.Contains(err.Error(), "--device is empty") {
			t.Errorf("%q: %v", tc.args, err)
		}
	}
}
