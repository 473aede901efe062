package main

import (
	"fmt"
	"io"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/clearance/clearance/pkg/cli"
)

// window is a listing's --since and --until, read as parseSince reads
// them (a time back from now, a date at midnight in loc, or an RFC 3339
// time).
type window struct {
	since, until *string
}

// bindWindow adds --since and --until for a listing of what (decisions,
// events).
func bindWindow(fs *cli.FlagSet, what string) window {
	return window{
		since: fs.String("since", "", "only "+what+" from this `time` on: a time back from now (90m, 24h, 7d), a date (2026-01-02, midnight in the local time zone) or an RFC 3339 time"),
		until: fs.String("until", "", "only "+what+" before this `time`, given as for --since"),
	}
}

// times returns the window's bounds, nil where not given; a usage error
// names the flag whose value does not read, or a window that ends before
// it starts.
func (w window) times(now time.Time, loc *time.Location) (since, until *timestamppb.Timestamp, err error) {
	var from, to time.Time
	if *w.since != "" {
		if from, err = parseSince(*w.since, now, loc); err != nil {
			return nil, nil, cli.Usagef("--since %q: %v", *w.since, err)
		}
		since = timestamppb.New(from)
	}
	if *w.until != "" {
		if to, err = parseSince(*w.until, now, loc); err != nil {
			return nil, nil, cli.Usagef("--until %q: %v", *w.until, err)
		}
		until = timestamppb.New(to)
	}
	if since != nil && until != nil && !from.Before(to) {
		return nil, nil, cli.Usagef("--until %s is not after --since %s", to.In(loc).Format(time.RFC3339), from.In(loc).Format(time.RFC3339))
	}
	return since, until, nil
}

// maxAll bounds what --all gathers in one command's memory.
const maxAll = 1_000_000

// gather asks for one page (next("")), or with all every page, following
// the tokens, up to maxAll items. It returns the items and the token of
// the page after them ("" when there is none).
func gather[T any](all bool, next func(token string) ([]T, string, error)) ([]T, string, error) {
	var out []T
	token := ""
	for {
		items, more, err := next(token)
		if err != nil {
			return nil, "", err
		}
		out = append(out, items...)
		if !all || more == "" || len(out) >= maxAll {
			return out, more, nil
		}
		token = more
	}
}

// moreMatch says on w, when a listing stopped with more to come, how to
// see the rest.
func moreMatch(w io.Writer, what string, more string, all bool) {
	switch {
	case more == "":
	case all:
		fmt.Fprintf(w, "more %s match than the %d listed: narrow it with --since and --until\n", what, maxAll)
	default:
		fmt.Fprintf(w, "more %s match: --limit up to 1000, --all for every one, or --since and --until to narrow\n", what)
	}
}
