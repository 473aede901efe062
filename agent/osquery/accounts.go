package osquery

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/timestamppb"

	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// AccountsQuery lists the Mac's people: local accounts of ordinary users
// (uid 501 and up on macOS, not hidden) that have logged in, whether each
// is at the console now, and its latest login. Every column is one macOS
// osquery has: users (username, uid, is_hidden), last (username, time),
// logged_in_users (user, tty).
const AccountsQuery = "SELECT u.username AS name, " +
	"EXISTS (SELECT 1 FROM logged_in_users li WHERE li.user = u.username AND li.tty = 'console') AS console, " +
	"(SELECT MAX(l.time) FROM last l WHERE l.username = u.username) AS last_login " +
	"FROM users u WHERE u.uid >= 501 AND u.is_hidden = 0 AND (" +
	"EXISTS (SELECT 1 FROM logged_in_users li WHERE li.user = u.username) OR " +
	"EXISTS (SELECT 1 FROM last l WHERE l.username = u.username))"

// Bounds on what LocalAccounts returns; the verifier refuses a report
// beyond them.
const (
	MaxLocalAccounts   = 32
	maxLocalAccountLen = 64
)

// LocalAccounts returns the Mac's local accounts that have logged in, the
// console user first, then by latest login, at most MaxLocalAccounts. A
// row whose name cannot be reported faithfully is left out. The error is
// osquery's, for the caller to log.
func LocalAccounts(ctx context.Context, q Querier) ([]*agentv1.LocalAccount, error) {
	rows, err := q.Query(ctx, AccountsQuery)
	if err != nil {
		return nil, err
	}
	type entry struct {
		a    *agentv1.LocalAccount
		last int64
	}
	var found []entry
	seen := map[string]bool{}
	for _, row := range rows {
		name := strings.TrimSpace(row["name"])
		if name == "" || len(name) > maxLocalAccountLen || !utf8.ValidString(name) || seen[name] {
			continue
		}
		seen[name] = true
		a := &agentv1.LocalAccount{Name: name, Console: row["console"] == "1"}
		last, err := strconv.ParseInt(row["last_login"], 10, 64)
		if err == nil && last > 0 {
			a.LastLogin = timestamppb.New(time.Unix(last, 0))
		}
		found = append(found, entry{a, last})
	}
	slices.SortFunc(found, func(x, y entry) int {
		switch {
		case x.a.Console != y.a.Console:
			if x.a.Console {
				return -1
			}
			return 1
		case x.last != y.last:
			if x.last > y.last {
				return -1
			}
			return 1
		}
		return strings.Compare(x.a.Name, y.a.Name)
	})
	out := make([]*agentv1.LocalAccount, 0, min(len(found), MaxLocalAccounts))
	for _, e := range found[:min(len(found), MaxLocalAccounts)] {
		out = append(out, e.a)
	}
	return out, nil
}
