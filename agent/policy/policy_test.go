package policy_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/clearance/clearance/agent/osquery"
	"github.com/clearance/clearance/agent/policy"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

type querier func(sql string) ([]map[string]string, error)

func (q querier) Query(_ context.Context, sql string) ([]map[string]string, error) { return q(sql) }

// Every result names the query it is for, whatever its status, so that a
// verifier never judges a changed query by it.
func TestRunStampsTheQuery(t *testing.T) {
	t.Parallel()
	const sql = "SELECT 1 FROM alf WHERE global_state >= 1"
	want := sha256.Sum256([]byte(sql))
	for name, q := range map[string]querier{
		"pass":  func(string) ([]map[string]string, error) { return []map[string]string{{"1": "1"}}, nil },
		"fail":  func(string) ([]map[string]string, error) { return nil, nil },
		"error": func(string) ([]map[string]string, error) { return nil, errors.New("no such table: alf") },
	} {
		res := policy.Run(t.Context(), q, &agentv1.Policy{Id: "firewall", Query: sql}, nil)
		if !bytes.Equal(res.GetQuerySha256(), want[:]) {
			t.Errorf("%s: query_sha256 = %x, want %x", name, res.GetQuerySha256(), want)
		}
		if res.GetPolicyId() != "firewall" || res.GetStatus() == agentv1.PolicyStatus_POLICY_STATUS_UNSPECIFIED {
			t.Errorf("%s: result = %v", name, res)
		}
	}
}

// A query the verifier's loader would refuse is refused by the agent too,
// whoever sent it: ERROR with the reason, and osquery never sees it.
func TestRunRefusesWhatTheLoaderRefuses(t *testing.T) {
	t.Parallel()
	for _, sql := range []string{
		"SELECT 1; ATTACH DATABASE '/tmp/x' AS x",
		"SELECT 1 FROM users;CREATE TEMP VIEW users AS SELECT 1",
		"SELECT 1; /* */ SELECT 2",
		"DELETE FROM users",
		"WITH x AS (SELECT 1) DELETE FROM users",
		"SELECT 1 /* ; ATTACH 'x' AS y",
		"",
	} {
		ran := false
		q := querier(func(string) ([]map[string]string, error) {
			ran = true
			return []map[string]string{{"1": "1"}}, nil
		})
		res := policy.Run(t.Context(), q, &agentv1.Policy{Id: "p", Query: sql}, nil)
		if ran {
			t.Errorf("%q was sent to osquery", sql)
		}
		if res.GetStatus() != agentv1.PolicyStatus_POLICY_STATUS_ERROR || !strings.HasPrefix(res.GetMessage(), "refused by the agent, not run: the query ") {
			t.Errorf("%q: %s %q, want ERROR refused by the agent", sql, res.GetStatus(), res.GetMessage())
		}
		if want := sha256.Sum256([]byte(sql)); !bytes.Equal(res.GetQuerySha256(), want[:]) {
			t.Errorf("%q: result does not name the query it refused", sql)
		}
	}
	res := policy.Run(t.Context(), querier(func(string) ([]map[string]string, error) {
		return []map[string]string{{"1": "1"}}, nil
	}), &agentv1.Policy{Id: "p", Query: "SELECT 1 FROM users WHERE shell = ';'; -- fine"}, nil)
	if res.GetStatus() != agentv1.PolicyStatus_POLICY_STATUS_PASS {
		t.Errorf("a single statement: %s %q, want PASS", res.GetStatus(), res.GetMessage())
	}
}

// osquery's error text goes back to the verifier; a query can make it carry
// a table (json_extract's "bad JSON path: '<the rows>'"). The agent sends at
// most MaxMessageSize bytes of it, cut on a character boundary.
func TestErrorMessageIsBounded(t *testing.T) {
	t.Parallel()
	rows := strings.Repeat("root:0:/var/root,daemon:1:/var/root,alice:501:/Users/alice,", 200)
	for name, msg := range map[string]string{
		"ascii":      "bad JSON path: '" + rows + "'",
		"multi-byte": strings.Repeat("é", 1000),
		"four-byte":  "x" + strings.Repeat("😀", 1000),
		"invalid":    strings.Repeat("a\xff", 1000),
	} {
		res := policy.Run(t.Context(), querier(func(string) ([]map[string]string, error) {
			return nil, &osquery.QueryError{Code: 1, Message: msg}
		}), &agentv1.Policy{Id: "p", Query: "SELECT 1"}, nil)
		got := res.GetMessage()
		if len(got) > policy.MaxMessageSize || !utf8.ValidString(got) || !strings.HasSuffix(got, "…") {
			t.Errorf("%s: message of %d bytes (valid UTF-8: %v), starting %.40q", name, len(got), utf8.ValidString(got), got)
		}
		if len(got) < policy.MaxMessageSize-8 {
			t.Errorf("%s: message cut to %d bytes, want close to %d", name, len(got), policy.MaxMessageSize)
		}
	}
	short := "no such column: sid"
	res := policy.Run(t.Context(), querier(func(string) ([]map[string]string, error) {
		return nil, &osquery.QueryError{Code: 1, Message: short}
	}), &agentv1.Policy{Id: "p", Query: "SELECT sid FROM certificates"}, nil)
	if res.GetMessage() != short {
		t.Errorf("short message = %q, want it whole", res.GetMessage())
	}
}

// A policy's result message for an osquery that cannot be reached leaves
// the socket's path out: it reaches the verifier and its readers.
func TestMessageLeavesTheSocketPathOut(t *testing.T) {
	t.Parallel()
	const path = "/var/run/S3CRET/osquery.em"
	err := fmt.Errorf("%w: %w", osquery.ErrUnavailable, &osquery.SocketError{Path: path,
		Err: fmt.Errorf("socket %s: lstat %s: no such file or directory", path, path)})
	if got, want := policy.Message(err), "osquery unavailable: socket (the configured socket): lstat (the configured socket): no such file or directory"; got != want {
		t.Errorf("Message = %q, want %q", got, want)
	}
}
