package admin

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/decision"
	"github.com/clearance/clearance/verifier/reason"
	"github.com/clearance/clearance/verifier/storage"
	"github.com/clearance/clearance/verifier/web"
)

var update = flag.Bool("update", false, "rewrite testdata golden files")

// decisionLog is an in-memory decision log that keeps storage's contract
// (newest first, Since <= At < Until, BeforeID, the 1000 cap). Every other
// storage.Store method is the nil embedded interface: calling one panics,
// which is how a test notices an unexpected store call.
type decisionLog struct {
	storage.Store
	t       *testing.T
	recs    []storage.DecisionRecord
	filters []storage.DecisionFilter
	audit   []storage.AuditEvent
}

// AppendAudit keeps the events, for the calls that record one.
func (l *decisionLog) AppendAudit(_ context.Context, e storage.AuditEvent) error {
	l.audit = append(l.audit, e)
	return nil
}

// GetDevice knows one device, "dev-a", for the calls that name one.
func (l *decisionLog) GetDevice(_ context.Context, id string) (storage.Device, error) {
	if id == "dev-a" {
		return storage.Device{ID: id}, nil
	}
	return storage.Device{}, storage.ErrNotFound
}

func (l *decisionLog) ListDevices(_ context.Context, afterID string, _ int) ([]storage.Device, error) {
	if "dev-a" > afterID {
		return []storage.Device{{ID: "dev-a"}}, nil
	}
	return nil, nil
}

func (l *decisionLog) ListDecisions(_ context.Context, f storage.DecisionFilter) ([]storage.DecisionRecord, error) {
	l.filters = append(l.filters, f)
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 1000)
	recs := slices.Clone(l.recs)
	sort.Slice(recs, func(i, j int) bool { return recs[i].ID > recs[j].ID })
	var out []storage.DecisionRecord
	for _, r := range recs {
		switch {
		case f.Username != "" && r.Username != f.Username,
			f.DeviceID != "" && r.DeviceID != f.DeviceID,
			f.ClaimedDeviceID != "" && r.ClaimedDeviceID != f.ClaimedDeviceID,
			f.Allow != nil && r.Allow != *f.Allow,
			!f.Since.IsZero() && r.At.Before(f.Since),
			!f.Until.IsZero() && !r.At.Before(f.Until),
			f.BeforeID != 0 && r.ID >= f.BeforeID:
			continue
		}
		if len(out) == limit {
			break
		}
		out = append(out, r)
	}
	return out, nil
}

func (l *decisionLog) AppendDecision(context.Context, storage.DecisionRecord) (int64, error) {
	l.t.Error("AppendDecision called: the admin API must not write to the decision log")
	return 0, errors.New("not allowed in this test")
}

var t0 = time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC)

// sampleLog has decisions 1..n, one a minute from t0, alternating users,
// devices and outcomes.
func sampleLog(t *testing.T, n int) *decisionLog {
	l := &decisionLog{t: t}
	for i := 1; i <= n; i++ {
		l.recs = append(l.recs, storage.DecisionRecord{
			ID:       int64(i),
			At:       t0.Add(time.Duration(i) * time.Minute),
			Username: []string{"alice@example.com", "bob@example.com"}[i%2],
			DeviceID: []string{"dev-a", "dev-b", "dev-c"}[i%3],
			Allow:    i%4 != 0,
			Reason:   map[bool]string{true: "allowed", false: "policy_failed"}[i%4 != 0],
			Source:   "sso",
		})
	}
	return l
}

func ids(ds []*adminv1.Decision) []int64 {
	var out []int64
	for _, d := range ds {
		out = append(out, d.GetId())
	}
	return out
}

func ptr[T any](v T) *T { return &v }

func TestListDecisionsFilters(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		req     *adminv1.ListDecisionsRequest
		filter  storage.DecisionFilter
		wantIDs []int64
	}{
		{"no filter: newest first, default page", &adminv1.ListDecisionsRequest{},
			storage.DecisionFilter{Limit: 101}, []int64{12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1}},
		{"username", &adminv1.ListDecisionsRequest{Username: "bob@example.com"},
			storage.DecisionFilter{Username: "bob@example.com", Limit: 101}, []int64{11, 9, 7, 5, 3, 1}},
		{"device_id", &adminv1.ListDecisionsRequest{DeviceId: "dev-a"},
			storage.DecisionFilter{DeviceID: "dev-a", Limit: 101}, []int64{12, 9, 6, 3}},
		{"claimed_device_id", &adminv1.ListDecisionsRequest{ClaimedDeviceId: "dev-a"},
			storage.DecisionFilter{ClaimedDeviceID: "dev-a", Limit: 101}, nil},
		{"allowed only", &adminv1.ListDecisionsRequest{Result: adminv1.DecisionResult_DECISION_RESULT_ALLOW},
			storage.DecisionFilter{Allow: ptr(true), Limit: 101}, []int64{11, 10, 9, 7, 6, 5, 3, 2, 1}},
		{"denied only", &adminv1.ListDecisionsRequest{Result: adminv1.DecisionResult_DECISION_RESULT_DENY},
			storage.DecisionFilter{Allow: ptr(false), Limit: 101}, []int64{12, 8, 4}},
		{"since is inclusive, until exclusive", &adminv1.ListDecisionsRequest{
			Since: timestamppb.New(t0.Add(3 * time.Minute)), Until: timestamppb.New(t0.Add(6 * time.Minute))},
			storage.DecisionFilter{Since: t0.Add(3 * time.Minute), Until: t0.Add(6 * time.Minute), Limit: 101}, []int64{5, 4, 3}},
		{"since equal to until is an empty range", &adminv1.ListDecisionsRequest{
			Since: timestamppb.New(t0.Add(3 * time.Minute)), Until: timestamppb.New(t0.Add(3 * time.Minute))},
			storage.DecisionFilter{Since: t0.Add(3 * time.Minute), Until: t0.Add(3 * time.Minute), Limit: 101}, nil},
		{"everything at once", &adminv1.ListDecisionsRequest{
			Username: "alice@example.com", DeviceId: "dev-a", Result: adminv1.DecisionResult_DECISION_RESULT_DENY,
			Since: timestamppb.New(t0), Until: timestamppb.New(t0.Add(time.Hour)), PageSize: 5},
			storage.DecisionFilter{Username: "alice@example.com", DeviceID: "dev-a", Allow: ptr(false),
				Since: t0, Until: t0.Add(time.Hour), Limit: 6}, []int64{12}},
		{"page_size above the maximum is capped", &adminv1.ListDecisionsRequest{PageSize: 5000},
			storage.DecisionFilter{Limit: 1000}, []int64{12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1}},
		{"page_token is the BeforeID cursor", &adminv1.ListDecisionsRequest{PageToken: decisionToken(4)},
			storage.DecisionFilter{BeforeID: 4, Limit: 101}, []int64{3, 2, 1}},
		{"id: the page's Reference", &adminv1.ListDecisionsRequest{Id: 7},
			storage.DecisionFilter{BeforeID: 8, Limit: 2}, []int64{7}},
		{"id that other filters leave out", &adminv1.ListDecisionsRequest{Id: 7, DeviceId: "dev-a"},
			storage.DecisionFilter{DeviceID: "dev-a", BeforeID: 8, Limit: 2}, nil},
		{"id no decision has", &adminv1.ListDecisionsRequest{Id: 99},
			storage.DecisionFilter{BeforeID: 100, Limit: 2}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			log := sampleLog(t, 12)
			s := &Server{Store: log}
			resp, err := s.ListDecisions(context.Background(), tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if len(log.filters) != 1 {
				t.Fatalf("store called %d times, want once", len(log.filters))
			}
			got := log.filters[0]
			if got.Username != tt.filter.Username || got.DeviceID != tt.filter.DeviceID ||
				!equalAllow(got.Allow, tt.filter.Allow) || !got.Since.Equal(tt.filter.Since) ||
				!got.Until.Equal(tt.filter.Until) || got.BeforeID != tt.filter.BeforeID || got.Limit != tt.filter.Limit {
				t.Errorf("filter = %s, want %s", showFilter(got), showFilter(tt.filter))
			}
			if g := ids(resp.GetDecisions()); !slices.Equal(g, tt.wantIDs) {
				t.Errorf("decisions = %v, want %v", g, tt.wantIDs)
			}
			if resp.GetNextPageToken() != "" {
				t.Errorf("next_page_token = %q on the last page", resp.GetNextPageToken())
			}
		})
	}
}

func equalAllow(a, b *bool) bool {
	return (a == nil) == (b == nil) && (a == nil || *a == *b)
}

func showFilter(f storage.DecisionFilter) string {
	allow := "nil"
	if f.Allow != nil {
		allow = fmt.Sprint(*f.Allow)
	}
	return fmt.Sprintf("{user=%q device=%q allow=%s since=%s until=%s before=%d limit=%d}",
		f.Username, f.DeviceID, allow, f.Since.Format(time.RFC3339), f.Until.Format(time.RFC3339), f.BeforeID, f.Limit)
}

// TestListDecisionsPaging follows next_page_token until it runs out: every
// decision is seen exactly once, newest first, with filters kept.
func TestListDecisionsPaging(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		records   int
		req       *adminv1.ListDecisionsRequest
		wantPages []int // decisions per page
		wantIDs   []int64
	}{
		{"pages of 3", 7, &adminv1.ListDecisionsRequest{PageSize: 3}, []int{3, 3, 1}, []int64{7, 6, 5, 4, 3, 2, 1}},
		{"exact multiple ends without an empty page", 6, &adminv1.ListDecisionsRequest{PageSize: 3}, []int{3, 3}, []int64{6, 5, 4, 3, 2, 1}},
		{"filtered", 12, &adminv1.ListDecisionsRequest{PageSize: 2, Username: "bob@example.com"}, []int{2, 2, 2},
			[]int64{11, 9, 7, 5, 3, 1}},
		{"one", 1, &adminv1.ListDecisionsRequest{PageSize: 1}, []int{1}, []int64{1}},
		{"empty log", 0, &adminv1.ListDecisionsRequest{}, []int{0}, nil},
		// At the backends' cap a full page cannot tell whether more exist,
		// so it offers a token and the next page may be empty.
		{"full page at the cap", 1000, &adminv1.ListDecisionsRequest{PageSize: 1000}, []int{1000, 0}, nil},
		{"over the cap", 1001, &adminv1.ListDecisionsRequest{PageSize: 1000}, []int{1000, 1}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := &Server{Store: sampleLog(t, tt.records)}
			req := proto.Clone(tt.req).(*adminv1.ListDecisionsRequest)
			var pages []int
			var all []int64
			for {
				resp, err := s.ListDecisions(context.Background(), req)
				if err != nil {
					t.Fatal(err)
				}
				pages = append(pages, len(resp.GetDecisions()))
				all = append(all, ids(resp.GetDecisions())...)
				if resp.GetNextPageToken() == "" {
					break
				}
				if len(pages) > tt.records+1 {
					t.Fatal("paging does not end")
				}
				req.PageToken = resp.GetNextPageToken()
			}
			if !slices.Equal(pages, tt.wantPages) {
				t.Errorf("page sizes = %v, want %v", pages, tt.wantPages)
			}
			if tt.wantIDs != nil && !slices.Equal(all, tt.wantIDs) {
				t.Errorf("decisions = %v, want %v", all, tt.wantIDs)
			}
			if len(all) != tt.records && tt.req.GetUsername() == "" {
				t.Errorf("saw %d decisions over all pages, want %d", len(all), tt.records)
			}
			if !slices.IsSortedFunc(all, func(a, b int64) int { return int(b - a) }) || len(slices.Compact(slices.Clone(all))) != len(all) {
				t.Errorf("decisions not strictly newest first: %v", all)
			}
		})
	}
}

func TestListDecisionsRefuses(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 257)
	b64 := base64.RawURLEncoding.EncodeToString
	tests := []struct {
		name string
		req  *adminv1.ListDecisionsRequest
		want string
	}{
		{"token not base64", &adminv1.ListDecisionsRequest{PageToken: "not base64!"}, "page_token"},
		{"token not a number", &adminv1.ListDecisionsRequest{PageToken: b64([]byte("dev-a"))}, "page_token"},
		{"token zero", &adminv1.ListDecisionsRequest{PageToken: b64([]byte("0"))}, "page_token"},
		{"token negative", &adminv1.ListDecisionsRequest{PageToken: b64([]byte("-5"))}, "page_token"},
		{"token not canonical", &adminv1.ListDecisionsRequest{PageToken: b64([]byte("007"))}, "page_token"},
		{"token overflows", &adminv1.ListDecisionsRequest{PageToken: b64([]byte("99999999999999999999"))}, "page_token"},
		{"token too long", &adminv1.ListDecisionsRequest{PageToken: strings.Repeat("MQ", 40)}, "page_token"},
		{"since after until", &adminv1.ListDecisionsRequest{
			Since: timestamppb.New(t0.Add(time.Second)), Until: timestamppb.New(t0)}, "since (2025-03-14T09:00:01Z) is after until (2025-03-14T09:00:00Z)"},
		{"since invalid", &adminv1.ListDecisionsRequest{Since: &timestamppb.Timestamp{Nanos: -1}}, "since"},
		{"until invalid", &adminv1.ListDecisionsRequest{Until: &timestamppb.Timestamp{Seconds: 1 << 62}}, "until"},
		{"username too long", &adminv1.ListDecisionsRequest{Username: strings.Repeat("x", 513)}, "username is longer than 512"},
		{"device_id too long", &adminv1.ListDecisionsRequest{DeviceId: long}, "device_id is longer than 256"},
		{"claimed_device_id too long", &adminv1.ListDecisionsRequest{ClaimedDeviceId: long}, "claimed_device_id is longer than 256"},
		{"NUL in username", &adminv1.ListDecisionsRequest{Username: "a\x00b"}, "username holds a control character"},
		{"ESC in claimed_device_id", &adminv1.ListDecisionsRequest{ClaimedDeviceId: "dev\x1b[2J"}, "claimed_device_id holds a control character"},
		{"negative page_size", &adminv1.ListDecisionsRequest{PageSize: -1}, "page_size"},
		{"unknown result", &adminv1.ListDecisionsRequest{Result: 7}, "result 7"},
		{"negative id", &adminv1.ListDecisionsRequest{Id: -1}, "id -1 is not a decision's id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			log := sampleLog(t, 3)
			s := &Server{Store: log}
			_, err := s.ListDecisions(context.Background(), tt.req)
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tt.want) {
				t.Fatalf("err = %v, want InvalidArgument mentioning %q", err, tt.want)
			}
			if len(log.filters) != 0 {
				t.Error("a refused request reached the store")
			}
		})
	}
	t.Run("256 is not too long", func(t *testing.T) {
		t.Parallel()
		s := &Server{Store: sampleLog(t, 3)}
		ok := strings.Repeat("x", 256)
		if _, err := s.ListDecisions(context.Background(), &adminv1.ListDecisionsRequest{Username: ok}); err != nil {
			t.Fatal(err)
		}
		// A device id of 256 is looked up: no device has it.
		if _, err := s.ListDecisions(context.Background(), &adminv1.ListDecisionsRequest{DeviceId: ok}); status.Code(err) != codes.NotFound {
			t.Fatalf("err = %v, want NotFound", err)
		}
	})
	t.Run("a device no one enrolled is not an empty log", func(t *testing.T) {
		t.Parallel()
		log := sampleLog(t, 3)
		s := &Server{Store: log}
		_, err := s.ListDecisions(context.Background(), &adminv1.ListDecisionsRequest{DeviceId: "zzzz"})
		if status.Code(err) != codes.NotFound || !strings.Contains(status.Convert(err).Message(), `no enrolled device's id is or starts with "zzzz"`) {
			t.Fatalf("err = %v, want NotFound naming the id", err)
		}
		if len(log.filters) != 0 {
			t.Error("a refused request reached the store")
		}
	})
}

// TestListDecisionsJSON checks a logged decision as grpcurl prints it: the
// status words, reason, live check, latency and source, field by field.
func TestListDecisionsJSON(t *testing.T) {
	t.Parallel()
	log := &decisionLog{t: t, recs: []storage.DecisionRecord{{
		ID:         42,
		At:         t0,
		Username:   "alice@example.com",
		DeviceID:   "0A1B2C3D-4E5F-4061-8172-839405A6B7C8",
		CertSerial: "1f3a",
		Allow:      false,
		Reason:     "policy_failed",
		Results: []storage.DecisionResult{
			{PolicyID: "filevault", Status: "PASS", Required: true, Critical: true},
			{PolicyID: "firewall", Status: "FAIL", Required: true},
			{PolicyID: "gatekeeper", Status: "ERROR", Required: true, Message: "no such table: gatekeeper"},
			{PolicyID: "os-version", Status: "MISSING", Required: true},
			{PolicyID: "screen-lock", Status: "SKIPPED"},
		},
		PolicySetVersion: "v7",
		ReportSeq:        31,
		LiveCheck:        "timed_out",
		Latency:          2500 * time.Millisecond,
		Source:           "sso_retry",
		RequestID:        "id-6c1e",
	}}}
	s := &Server{Store: log}
	resp, err := s.ListDecisions(context.Background(), &adminv1.ListDecisionsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	out := golden(t, "list_decisions.json", resp)
	for _, w := range []string{`"POLICY_STATUS_PASS"`, `"POLICY_STATUS_FAIL"`, `"POLICY_STATUS_ERROR"`, `"POLICY_STATUS_MISSING"`,
		`"reason": "policy_failed"`, `"liveCheck": "timed_out"`, `"latency": "2.500s"`, `"source": "sso_retry"`} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %s", w)
		}
	}
}

// fakeExplainer returns a fixed decision (or error) and records its calls.
type fakeExplainer struct {
	d     decision.Decision
	err   error
	calls []explainCall
}

type explainCall struct {
	deviceID, username string
	liveCheck          bool
}

func (f *fakeExplainer) Explain(_ context.Context, deviceID, username string, liveCheck bool) (decision.Decision, error) {
	f.calls = append(f.calls, explainCall{deviceID, username, liveCheck})
	if f.err != nil {
		return decision.Decision{}, f.err
	}
	d := f.d
	if liveCheck && d.LiveCheck == decision.LiveCheckNone {
		d.LiveCheck = decision.LiveCheckAnswered
	}
	d.Username = username
	return d, nil
}

var _ Explainer = (*fakeExplainer)(nil)

// decide runs the real decision engine on a small set, so the mapping is
// tested on decisions as the engine makes them.
func decide(statuses map[string]agentv1.PolicyStatus, critical bool) decision.Decision {
	ps := &agentv1.PolicySet{Version: "v7", Policies: []*agentv1.Policy{
		{Id: "filevault", Name: "FileVault is on", Description: "Disk encryption.", Resolution: "Turn on FileVault in System Settings.", Required: true, Critical: critical},
		{Id: "firewall", Name: "Firewall is on", Resolution: "Turn on the firewall.", Required: true},
		{Id: "os-version", Name: "macOS is current", Resolution: "Update macOS.", Required: true},
		{Id: "screen-lock", Name: "Screen locks", Resolution: "Require a password after sleep."},
	}}
	r := &agentv1.PostureReport{DeviceId: "dev-a", Seq: 31, PolicySetVersion: "v6", ObservedAt: timestamppb.New(t0.Add(-90 * time.Second))}
	for id, st := range statuses {
		r.Results = append(r.Results, &agentv1.PolicyResult{PolicyId: id, Status: st, Message: map[bool]string{true: "no such table"}[st == agentv1.PolicyStatus_POLICY_STATUS_ERROR]})
	}
	sort.Slice(r.Results, func(i, j int) bool { return r.Results[i].PolicyId < r.Results[j].PolicyId })
	return decision.Decide(decision.Input{
		Device:           &storage.Device{ID: "dev-a", Hostname: "alices-mbp"},
		Report:           r,
		ReportReceivedAt: t0.Add(-89 * time.Second),
		Policies:         ps,
		Now:              t0,
	})
}

const (
	pass    = agentv1.PolicyStatus_POLICY_STATUS_PASS
	fail    = agentv1.PolicyStatus_POLICY_STATUS_FAIL
	errored = agentv1.PolicyStatus_POLICY_STATUS_ERROR
)

func TestExplainAccess(t *testing.T) {
	t.Parallel()
	allow := decide(map[string]agentv1.PolicyStatus{"filevault": pass, "firewall": pass, "os-version": pass, "screen-lock": fail}, true)
	deny := decide(map[string]agentv1.PolicyStatus{"filevault": fail, "firewall": errored}, true) // os-version missing
	bypassable := decide(map[string]agentv1.PolicyStatus{"filevault": fail, "firewall": pass, "os-version": pass, "screen-lock": pass}, false)
	if !allow.Allow || deny.Allow || deny.Reason != reason.PolicyFailed || !bypassable.Bypassable() {
		t.Fatalf("test decisions are not what they should be: %v %v %v", allow.Reason, deny.Reason, bypassable.Reason)
	}

	t.Run("allow", func(t *testing.T) {
		t.Parallel()
		fx := &fakeExplainer{d: allow}
		s := &Server{Store: &decisionLog{t: t}, Access: fx}
		resp, err := s.ExplainAccess(context.Background(), &adminv1.ExplainAccessRequest{DeviceId: "dev-a", Username: "alice@example.com"})
		if err != nil {
			t.Fatal(err)
		}
		if !resp.GetAllow() || resp.GetReason() != "allowed" || resp.GetMessage() != web.Message(reason.Allowed, decision.LiveCheckNone) ||
			len(resp.GetFailing()) != 0 || resp.GetBypassable() || resp.GetLiveCheck() != "none" {
			t.Errorf("allow mapped to %v", resp)
		}
		if got := findingIDs(resp.GetAdvisory()); !slices.Equal(got, []string{"screen-lock:POLICY_STATUS_FAIL"}) {
			t.Errorf("advisory = %v", got)
		}
		if got := findingIDs(resp.GetResults()); !slices.Equal(got, []string{"filevault:POLICY_STATUS_PASS", "firewall:POLICY_STATUS_PASS", "os-version:POLICY_STATUS_PASS", "screen-lock:POLICY_STATUS_FAIL"}) {
			t.Errorf("results = %v", got)
		}
		if resp.GetPostureAge().AsDuration() != 90*time.Second || !resp.GetObservedAt().AsTime().Equal(t0.Add(-90*time.Second)) ||
			resp.GetReportSeq() != 31 || resp.GetPolicySetVersion() != "v7" || resp.GetReportPolicySetVersion() != "v6" ||
			resp.GetDeviceId() != "dev-a" || resp.GetDeviceName() != "alices-mbp" || resp.GetUsername() != "alice@example.com" {
			t.Errorf("context mapped to %v", resp)
		}
	})
	t.Run("deny", func(t *testing.T) {
		t.Parallel()
		s := &Server{Store: &decisionLog{t: t}, Access: &fakeExplainer{d: deny}}
		resp, err := s.ExplainAccess(context.Background(), &adminv1.ExplainAccessRequest{DeviceId: "dev-a", Username: "alice@example.com"})
		if err != nil {
			t.Fatal(err)
		}
		golden(t, "explain_deny.json", resp)
	})
	t.Run("bypassable deny", func(t *testing.T) {
		t.Parallel()
		s := &Server{Store: &decisionLog{t: t}, Access: &fakeExplainer{d: bypassable}}
		resp, err := s.ExplainAccess(context.Background(), &adminv1.ExplainAccessRequest{DeviceId: "dev-a"})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetAllow() || !resp.GetBypassable() || len(resp.GetFailing()) != 1 || resp.GetFailing()[0].GetCritical() {
			t.Errorf("bypassable deny mapped to %v", resp)
		}
	})
	t.Run("a grace period's end is each policy's blocks_from", func(t *testing.T) {
		t.Parallel()
		ends := t0.Add(52 * time.Hour)
		d := decision.Decision{DeviceID: "dev-a", Reason: reason.PolicyFailed, BlockFrom: ends, Failing: []decision.Finding{
			{PolicyID: "macos-version", Required: true, Status: decision.StatusFail, Enforcement: decision.Warn, GraceEnds: ends, BlocksFrom: ends},
			{PolicyID: "firewall", Required: true, Status: decision.StatusFail, Enforcement: decision.Warn, GraceEnds: ends.Add(time.Hour)},
		}}
		s := &Server{Store: &decisionLog{t: t}, Access: &fakeExplainer{d: d}}
		resp, err := s.ExplainAccess(context.Background(), &adminv1.ExplainAccessRequest{DeviceId: "dev-a"})
		if err != nil {
			t.Fatal(err)
		}
		f := resp.GetFailing()
		if len(f) != 2 || !f[0].GetBlocksFrom().AsTime().Equal(ends) || !resp.GetBlockFrom().AsTime().Equal(ends) {
			t.Errorf("blocks_from mapped to %v", resp)
		}
		// A grace that holds no block back (the policy only warns) blocks
		// from no date.
		if f[1].BlocksFrom != nil || f[1].GetGraceEnds() == nil {
			t.Errorf("a warning's grace mapped to %v", f[1])
		}
	})
	t.Run("unmeasured freshness leaves posture_age unset", func(t *testing.T) {
		t.Parallel()
		d := decision.Decide(decision.Input{Device: &storage.Device{ID: "dev-a"}, Policies: &agentv1.PolicySet{Version: "v7"}, Now: t0, LiveCheck: decision.LiveCheckOffline})
		s := &Server{Store: &decisionLog{t: t}, Access: &fakeExplainer{d: d}}
		resp, err := s.ExplainAccess(context.Background(), &adminv1.ExplainAccessRequest{DeviceId: "dev-a", LiveCheck: true})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetReason() != "no_report" || resp.GetLiveCheck() != "agent_offline" || resp.PostureAge != nil || resp.ObservedAt != nil || len(resp.GetResults()) != 0 {
			t.Errorf("no-report deny mapped to %v", resp)
		}
	})
}

func findingIDs(fs []*adminv1.PolicyFinding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.GetPolicyId()+":"+f.GetStatus().String())
	}
	return out
}

func TestExplainAccessLiveCheck(t *testing.T) {
	t.Parallel()
	for _, live := range []bool{false, true} {
		t.Run(fmt.Sprint("live_check=", live), func(t *testing.T) {
			t.Parallel()
			fx := &fakeExplainer{d: decide(map[string]agentv1.PolicyStatus{"filevault": pass, "firewall": pass, "os-version": pass}, true)}
			log := &decisionLog{t: t}
			s := &Server{Store: log, Access: fx}
			resp, err := s.ExplainAccess(context.Background(), &adminv1.ExplainAccessRequest{DeviceId: "dev-a", Username: "bob@example.com", LiveCheck: live})
			if err != nil {
				t.Fatal(err)
			}
			want := explainCall{"dev-a", "bob@example.com", live}
			if len(fx.calls) != 1 || fx.calls[0] != want {
				t.Errorf("Explain calls = %+v, want [%+v]", fx.calls, want)
			}
			wantWord := map[bool]string{false: "none", true: "answered"}[live]
			if resp.GetLiveCheck() != wantWord {
				t.Errorf("live_check = %q, want %q", resp.GetLiveCheck(), wantWord)
			}
			// A live check asked the Mac: audited, by whom.
			if live != (len(log.audit) == 1) || live && (log.audit[0].Action != "device.check" || log.audit[0].Actor != DataDirActor || log.audit[0].DeviceID != "dev-a") {
				t.Errorf("audit = %+v", log.audit)
			}
		})
	}
}

// A read token may explain from the latest report, not have the Mac run
// its policies: that is RequestCheck's effect.
func TestExplainAccessLiveCheckNeedsAdmin(t *testing.T) {
	fx := &fakeExplainer{d: decide(map[string]agentv1.PolicyStatus{"filevault": pass}, true)}
	s := &Server{Store: &decisionLog{t: t}, Access: fx}
	ctx := context.WithValue(context.Background(), callerKey{}, Caller{Name: "bob@example.com", TokenID: "0123456789abcdef", Role: storage.AdminRoleRead})
	_, err := s.ExplainAccess(ctx, &adminv1.ExplainAccessRequest{DeviceId: "dev-a", LiveCheck: true})
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "live_check asks the Mac") || len(fx.calls) != 0 {
		t.Fatalf("a read token's live check: %v, %d explanations", err, len(fx.calls))
	}
	if _, err := s.ExplainAccess(ctx, &adminv1.ExplainAccessRequest{DeviceId: "dev-a"}); err != nil || len(fx.calls) != 1 {
		t.Fatalf("a read token's explanation: %v", err)
	}
}

func TestExplainAccessErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		access Explainer
		req    *adminv1.ExplainAccessRequest
		code   codes.Code
		msg    string
	}{
		{"unknown device", &fakeExplainer{},
			&adminv1.ExplainAccessRequest{DeviceId: "nope"}, codes.NotFound, `no enrolled device's id is or starts with "nope"`},
		{"device gone since", &fakeExplainer{err: fmt.Errorf("reading device: %w", storage.ErrNotFound)},
			&adminv1.ExplainAccessRequest{DeviceId: "dev-a"}, codes.NotFound, `device "dev-a" is not enrolled`},
		{"the start of an id", &fakeExplainer{err: errors.New("resolved")},
			&adminv1.ExplainAccessRequest{DeviceId: "DEV"}, codes.Internal, "explaining access failed"},
		{"hostile device_id", &fakeExplainer{},
			&adminv1.ExplainAccessRequest{DeviceId: "dev\x00a\xff"}, codes.InvalidArgument, "device_id holds a control character"},
		{"odd bytes in device_id", &fakeExplainer{},
			&adminv1.ExplainAccessRequest{DeviceId: "dev\u202ea\xff"}, codes.NotFound, `no enrolled device's id is or starts with`},
		{"not wired", nil, &adminv1.ExplainAccessRequest{DeviceId: "dev-a"}, codes.Unavailable, "ExplainAccess is not available"},
		{"no device_id", &fakeExplainer{}, &adminv1.ExplainAccessRequest{}, codes.InvalidArgument, "device_id is required"},
		{"device_id too long", &fakeExplainer{}, &adminv1.ExplainAccessRequest{DeviceId: strings.Repeat("d", 257)}, codes.InvalidArgument, "device_id is longer than 256"},
		{"username too long", &fakeExplainer{}, &adminv1.ExplainAccessRequest{DeviceId: "dev-a", Username: strings.Repeat("u", 513)}, codes.InvalidArgument, "username is longer than 512"},
		{"canceled", &fakeExplainer{err: fmt.Errorf("live check: %w", context.Canceled)},
			&adminv1.ExplainAccessRequest{DeviceId: "dev-a"}, codes.Canceled, "canceled"},
		{"deadline", &fakeExplainer{err: fmt.Errorf("live check: %w", context.DeadlineExceeded)},
			&adminv1.ExplainAccessRequest{DeviceId: "dev-a"}, codes.DeadlineExceeded, "deadline"},
		{"internal cause stays in the log", &fakeExplainer{err: errors.New("db: disk I/O error at /var/lib/secret.db")},
			&adminv1.ExplainAccessRequest{DeviceId: "dev-a"}, codes.Internal, "explaining access failed; see the verifier log"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := &Server{Store: &decisionLog{t: t}}
			if tt.access != nil {
				s.Access = tt.access
			}
			_, err := s.ExplainAccess(context.Background(), tt.req)
			st := status.Convert(err)
			if st.Code() != tt.code || !strings.Contains(st.Message(), tt.msg) {
				t.Fatalf("err = %v, want %v mentioning %q", err, tt.code, tt.msg)
			}
			if strings.Contains(st.Message(), "/var/lib") {
				t.Errorf("internal cause leaked to the client: %q", st.Message())
			}
			if fx, ok := tt.access.(*fakeExplainer); ok && tt.code == codes.InvalidArgument && len(fx.calls) != 0 {
				t.Error("a refused request reached the Explainer")
			}
		})
	}
}

// golden compares m, as protojson renders it (normalised: protojson's
// whitespace is deliberately unstable), with testdata/name.
func golden(t *testing.T, name string, m proto.Message) string {
	t.Helper()
	raw, err := protojson.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		t.Fatal(err)
	}
	buf.WriteByte('\n')
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("%s differs from protojson output; got:\n%s", path, buf.Bytes())
	}
	return buf.String()
}
