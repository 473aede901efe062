package sqlrow

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/clearance/clearance/verifier/storage"
)

// DecisionValueColumns are the decisions table's columns but id, in
// DecisionArgs' order.
const DecisionValueColumns = `at, username, device_id, cert_serial, allow, reason, results,
	policy_set_version, report_seq, live_check, latency_ns, source, request_id`

// DecisionColumns are the decisions table's columns in ScanDecision's order.
const DecisionColumns = `id, ` + DecisionValueColumns

// DecisionArgs checks d and returns its values in DecisionValueColumns'
// order, Results encoded as JSON.
func DecisionArgs(d storage.DecisionRecord) ([]any, error) {
	for _, f := range []struct{ name, value string }{
		{"username", d.Username},
		{"device ID", d.DeviceID},
		{"cert serial", d.CertSerial},
		{"reason", d.Reason},
		{"policy set version", d.PolicySetVersion},
		{"live check", d.LiveCheck},
		{"source", d.Source},
		{"request ID", d.RequestID},
	} {
		if err := CheckText(f.name, f.value, storage.MaxTextLen); err != nil {
			return nil, err
		}
	}
	// Both backends' integers are signed; no real seq gets near this.
	if d.ReportSeq > math.MaxInt64 {
		return nil, fmt.Errorf("report seq %d exceeds the storable maximum %d", d.ReportSeq, int64(math.MaxInt64))
	}
	results := d.Results
	if results == nil {
		results = []storage.DecisionResult{} // "[]", not "null"
	}
	js, err := json.Marshal(results)
	if err != nil {
		return nil, fmt.Errorf("encoding results: %w", err)
	}
	if len(js) > storage.MaxDecisionResultsLen {
		return nil, fmt.Errorf("results are %d bytes as JSON, more than the %d allowed", len(js), storage.MaxDecisionResultsLen)
	}
	var c TimeCodec
	at := c.NS("decision time", d.At)
	if c.Err != nil {
		return nil, c.Err
	}
	return []any{at, d.Username, d.DeviceID, d.CertSerial, d.Allow, d.Reason, string(js),
		d.PolicySetVersion, int64(d.ReportSeq), d.LiveCheck, int64(d.Latency), d.Source, d.RequestID}, nil
}

// ScanDecision reads a row of DecisionColumns.
func ScanDecision(sc Scanner) (storage.DecisionRecord, error) {
	var (
		d                storage.DecisionRecord
		at, seq, latency int64
		results          string
	)
	if err := sc.Scan(&d.ID, &at, &d.Username, &d.DeviceID, &d.CertSerial, &d.Allow, &d.Reason,
		&results, &d.PolicySetVersion, &seq, &d.LiveCheck, &latency, &d.Source, &d.RequestID); err != nil {
		return storage.DecisionRecord{}, err
	}
	if err := json.Unmarshal([]byte(results), &d.Results); err != nil {
		return storage.DecisionRecord{}, fmt.Errorf("decoding results of decision %d: %w", d.ID, err)
	}
	if len(d.Results) == 0 {
		d.Results = nil
	}
	d.At = FromNS(at)
	d.ReportSeq = uint64(seq) // never negative: CHECK (report_seq >= 0)
	d.Latency = time.Duration(latency)
	return d, nil
}

// ListDecisionsQuery builds the query for f, newest first, and its
// arguments; param(n) is the dialect's n-th placeholder (1-based).
//
// Since and Until may lie outside the range TimeCodec can store (the admin
// API takes any year from 1 to 9999). No stored time lies outside it, so
// such a bound selects everything or nothing, as it would if it fitted.
func ListDecisionsQuery(f storage.DecisionFilter, param func(n int) string) (string, []any) {
	var (
		where []string
		args  []any
	)
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, cond+" "+param(len(args)))
	}
	const nothing = "0 = 1"
	if f.Username != "" {
		add("username =", f.Username)
	}
	if f.DeviceID != "" {
		add("device_id =", f.DeviceID)
	}
	if f.Allow != nil {
		add("allow =", *f.Allow)
	}
	switch {
	case f.Since.IsZero() || f.Since.Before(minTime):
	case f.Since.After(maxTime):
		where = append(where, nothing)
	default:
		add("at >=", f.Since.UnixNano())
	}
	switch {
	case f.Until.IsZero() || f.Until.After(maxTime):
	case f.Until.Before(minTime):
		where = append(where, nothing)
	default:
		add("at <", f.Until.UnixNano())
	}
	if f.BeforeID > 0 {
		add("id <", f.BeforeID)
	}
	var q strings.Builder
	q.WriteString(`SELECT ` + DecisionColumns + ` FROM decisions`)
	if len(where) > 0 {
		q.WriteString(` WHERE ` + strings.Join(where, ` AND `))
	}
	args = append(args, DecisionLimit(f.Limit))
	q.WriteString(` ORDER BY id DESC LIMIT ` + param(len(args)))
	return q.String(), args
}

// DecisionLimit is the number of decisions a List with this limit returns
// at most: DefaultDecisionLimit for <= 0, capped at MaxDecisionLimit.
func DecisionLimit(limit int) int {
	if limit <= 0 {
		return storage.DefaultDecisionLimit
	}
	return min(limit, storage.MaxDecisionLimit)
}
