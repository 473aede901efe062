package access

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/decision"
	"github.com/clearance/clearance/verifier/hub"
	"github.com/clearance/clearance/verifier/ingest"
	"github.com/clearance/clearance/verifier/reason"
	"github.com/clearance/clearance/verifier/storage"
)

var now = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

type fakeStore struct {
	deviceReads int
	dev         *storage.Device
	report      *storage.Report
	devErr      error
	reportErr   error
}

func (f *fakeStore) GetDevice(_ context.Context, id string) (storage.Device, error) {
	f.deviceReads++
	if f.devErr != nil {
		return storage.Device{}, f.devErr
	}
	if f.dev == nil || f.dev.ID != id {
		return storage.Device{}, storage.ErrNotFound
	}
	return *f.dev, nil
}

func (f *fakeStore) LatestReport(context.Context, string) (storage.Report, error) {
	if f.reportErr != nil {
		return storage.Report{}, f.reportErr
	}
	if f.report == nil {
		return storage.Report{}, storage.ErrNotFound
	}
	return *f.report, nil
}

type fakeChecker struct {
	connected bool
	answer    *agentv1.PostureReport
	err       error
	calls     int
}

func (f *fakeChecker) Connected(string) bool { return f.connected }
func (f *fakeChecker) CheckNow(context.Context, string, time.Duration) (*ingest.Accepted, error) {
	f.calls++
	if f.err != nil {
		return nil, f.err
	}
	return &ingest.Accepted{Report: f.answer, Stored: storage.Report{ReceivedAt: now}}, nil
}

type fixed struct{ ps *agentv1.PolicySet }

func (f fixed) Current() *agentv1.PolicySet { return f.ps }

var policies = &agentv1.PolicySet{Version: "v1", Policies: []*agentv1.Policy{
	{Id: "filevault", Name: "FileVault", Required: true, Critical: true},
}}

func report(status agentv1.PolicyStatus, observed time.Time) *agentv1.PostureReport {
	return &agentv1.PostureReport{DeviceId: "dev1", Seq: 1, ObservedAt: timestamppb.New(observed), PolicySetVersion: "v1",
		Results: []*agentv1.PolicyResult{{PolicyId: "filevault", Status: status}}}
}

func stored(r *agentv1.PostureReport) *storage.Report {
	b, _ := proto.Marshal(r)
	return &storage.Report{DeviceID: r.DeviceId, Seq: r.Seq, ObservedAt: r.ObservedAt.AsTime(), ReceivedAt: r.ObservedAt.AsTime(), Payload: b}
}

func gate(st *fakeStore, ch *fakeChecker) *Gate {
	return &Gate{Store: st, Checker: ch, Policies: fixed{policies}, LiveCheckTimeout: 50 * time.Millisecond, Now: func() time.Time { return now }}
}

// TestGateLiveCheck covers when a live check is asked for and what each
// outcome does to the decision, the timeout among them.
func TestGateLiveCheck(t *testing.T) {
	t.Parallel()
	dev := &storage.Device{ID: "dev1", Hostname: "mac"}
	pass, fail := agentv1.PolicyStatus_POLICY_STATUS_PASS, agentv1.PolicyStatus_POLICY_STATUS_FAIL
	cases := []struct {
		name       string
		report     *agentv1.PostureReport
		checker    fakeChecker
		mode       Mode
		wantAllow  bool
		wantReason decision.Reason
		wantLive   decision.LiveCheck
		wantCalls  int
	}{
		{"fresh: no check", report(pass, now.Add(-5*time.Second)), fakeChecker{connected: true}, LiveIfStale, true, reason.Allowed, decision.LiveCheckNone, 0},
		{"old: answered pass", report(fail, now.Add(-time.Minute)), fakeChecker{connected: true, answer: report(pass, now)}, LiveIfStale, true, reason.Allowed, decision.LiveCheckAnswered, 1},
		{"old: answered fail", report(pass, now.Add(-time.Minute)), fakeChecker{connected: true, answer: report(fail, now)}, LiveIfStale, false, reason.PolicyFailed, decision.LiveCheckAnswered, 1},
		{"old: timed out, stored still fresh enough", report(pass, now.Add(-time.Minute)), fakeChecker{connected: true, err: context.DeadlineExceeded}, LiveIfStale, true, reason.Allowed, decision.LiveCheckTimedOut, 1},
		{"stale: timed out denies", report(pass, now.Add(-10*time.Minute)), fakeChecker{connected: true, err: context.DeadlineExceeded}, LiveIfStale, false, reason.StalePosture, decision.LiveCheckTimedOut, 1},
		{"stale: offline denies", report(pass, now.Add(-10*time.Minute)), fakeChecker{}, LiveIfStale, false, reason.StalePosture, decision.LiveCheckOffline, 0},
		{"stale: disconnects while asked", report(pass, now.Add(-10*time.Minute)), fakeChecker{connected: true, err: hub.ErrNotConnected}, LiveIfStale, false, reason.StalePosture, decision.LiveCheckOffline, 1},
		{"no report: answered", nil, fakeChecker{connected: true, answer: report(pass, now)}, LiveIfStale, true, reason.Allowed, decision.LiveCheckAnswered, 1},
		{"no report: offline", nil, fakeChecker{}, LiveIfStale, false, reason.NoReport, decision.LiveCheckOffline, 0},
		{"always: fresh failing rechecked", report(fail, now), fakeChecker{connected: true, answer: report(pass, now)}, LiveAlways, true, reason.Allowed, decision.LiveCheckAnswered, 1},
		{"stored only: never asks", report(pass, now.Add(-10*time.Minute)), fakeChecker{connected: true, answer: report(pass, now)}, StoredOnly, false, reason.StalePosture, decision.LiveCheckNone, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := &fakeStore{dev: dev}
			if tc.report != nil {
				st.report = stored(tc.report)
			}
			ch := tc.checker
			d, err := gate(st, &ch).Decide(context.Background(), Query{DeviceID: "dev1", Username: "ada"}, tc.mode)
			if err != nil {
				t.Fatal(err)
			}
			if d.Allow != tc.wantAllow || d.Reason != tc.wantReason || d.LiveCheck != tc.wantLive || ch.calls != tc.wantCalls {
				t.Errorf("got allow=%v reason=%s live=%s calls=%d; want %v %s %s %d", d.Allow, d.Reason, d.LiveCheck, ch.calls,
					tc.wantAllow, tc.wantReason, tc.wantLive, tc.wantCalls)
			}
			if d.Username != "ada" || d.DeviceName != "mac" {
				t.Errorf("context %q %q", d.Username, d.DeviceName)
			}
		})
	}
}

func TestGateDevice(t *testing.T) {
	t.Parallel()
	ch := &fakeChecker{connected: true}
	// Unknown: decided, not an error; never live-checked.
	d, err := gate(&fakeStore{}, ch).Decide(context.Background(), Query{DeviceID: "nope", Username: "ada"}, LiveAlways)
	if err != nil || d.Allow || d.Reason != reason.UnknownDevice || ch.calls != 0 {
		t.Fatalf("%+v %v", d, err)
	}
	// Revoked: never live-checked.
	rev := &storage.Device{ID: "dev1", RevokedAt: now}
	d, _ = gate(&fakeStore{dev: rev, report: stored(report(agentv1.PolicyStatus_POLICY_STATUS_PASS, now))}, ch).Decide(context.Background(), Query{DeviceID: "dev1", Username: "ada"}, LiveAlways)
	if d.Reason != reason.DeviceRevoked || ch.calls != 0 {
		t.Fatalf("%+v", d)
	}
	// Storage failures are errors (the caller fails closed), never a decision.
	boom := errors.New("disk on fire")
	if _, err := gate(&fakeStore{devErr: boom}, ch).Decide(context.Background(), Query{DeviceID: "dev1"}, LiveIfStale); !errors.Is(err, ErrStorage) {
		t.Fatal(err)
	}
	if _, err := gate(&fakeStore{dev: &storage.Device{ID: "dev1"}, reportErr: boom}, ch).Decide(context.Background(), Query{DeviceID: "dev1"}, LiveIfStale); !errors.Is(err, ErrStorage) {
		t.Fatal(err)
	}
	// A stored payload that no longer parses is no report: denied, not trusted.
	bad := &storage.Report{Payload: []byte{0xff, 0xff}}
	d, _ = gate(&fakeStore{dev: &storage.Device{ID: "dev1"}, report: bad}, &fakeChecker{}).Decide(context.Background(), Query{DeviceID: "dev1"}, LiveIfStale)
	if d.Allow || d.Reason != reason.NoReport {
		t.Fatalf("%+v", d)
	}
}

func TestExplain(t *testing.T) {
	t.Parallel()
	ch := &fakeChecker{connected: true, answer: report(agentv1.PolicyStatus_POLICY_STATUS_PASS, now)}
	g := gate(&fakeStore{dev: &storage.Device{ID: "dev1"}, report: stored(report(agentv1.PolicyStatus_POLICY_STATUS_PASS, now.Add(-time.Minute)))}, ch)
	if _, err := g.Explain(context.Background(), "nope", "", false); !errors.Is(err, storage.ErrNotFound) {
		t.Fatal(err)
	}
	d, err := g.Explain(context.Background(), "dev1", "", false)
	if err != nil || d.LiveCheck != decision.LiveCheckNone || ch.calls != 0 || !d.Allow {
		t.Fatalf("%+v %v", d, err)
	}
	d, _ = g.Explain(context.Background(), "dev1", "", true)
	if d.LiveCheck != decision.LiveCheckAnswered || ch.calls != 1 {
		t.Fatalf("%+v", d)
	}
}

// TestGateUsesDeviceGiven: a sign-in has just read the device to identify
// the certificate; the gate does not read it again.
func TestGateUsesDeviceGiven(t *testing.T) {
	t.Parallel()
	dev := &storage.Device{ID: "dev1"}
	st := &fakeStore{dev: dev, report: stored(report(agentv1.PolicyStatus_POLICY_STATUS_PASS, now))}
	d, err := gate(st, &fakeChecker{}).Decide(context.Background(), Query{DeviceID: "dev1", Device: dev}, LiveIfStale)
	if err != nil || !d.Allow || st.deviceReads != 0 {
		t.Fatalf("allow=%v err=%v device reads=%d", d.Allow, err, st.deviceReads)
	}
	// A record for another device is not trusted for this one.
	if _, err := gate(st, &fakeChecker{}).Decide(context.Background(), Query{DeviceID: "dev1", Device: &storage.Device{ID: "dev2"}}, LiveIfStale); err != nil || st.deviceReads != 1 {
		t.Fatalf("err=%v device reads=%d", err, st.deviceReads)
	}
}

// fakeRollout counts the reads of a sign-in's stored rollout state.
type fakeRollout struct {
	reads int
	ro    decision.Rollout
}

func (f *fakeRollout) Inputs(context.Context, string, string, time.Time) (decision.Rollout, error) {
	f.reads++
	return f.ro, nil
}

// TestGateRolloutReadOnlyWhenSomethingFails: a Mac that passes is decided
// without reading grace, bypasses or exemptions; one that fails reads
// them, and they apply (here an exemption lets it through).
func TestGateRolloutReadOnlyWhenSomethingFails(t *testing.T) {
	t.Parallel()
	dev := &storage.Device{ID: "dev1", Hostname: "mac"}
	exempt := decision.Rollout{Exemptions: []decision.Exemption{{ID: 7, DeviceID: "dev1", ExpiresAt: now.Add(time.Hour)}}}
	for _, tc := range []struct {
		name      string
		status    agentv1.PolicyStatus
		wantReads int
		wantAllow bool
		wantMode  decision.Mode
	}{
		{"passes", agentv1.PolicyStatus_POLICY_STATUS_PASS, 0, true, decision.ModeEnforce},
		{"fails, exempt", agentv1.PolicyStatus_POLICY_STATUS_FAIL, 1, true, decision.ModeExempt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ro := &fakeRollout{ro: exempt}
			g := gate(&fakeStore{dev: dev, report: stored(report(tc.status, now))}, &fakeChecker{})
			g.Rollout = ro
			d, err := g.Decide(context.Background(), Query{DeviceID: "dev1", Username: "ada"}, StoredOnly)
			if err != nil {
				t.Fatal(err)
			}
			if ro.reads != tc.wantReads || d.Allow != tc.wantAllow || d.Mode != tc.wantMode {
				t.Errorf("reads %d, allow %v, mode %q; want %d, %v, %q", ro.reads, d.Allow, d.Mode, tc.wantReads, tc.wantAllow, tc.wantMode)
			}
		})
	}
}

// reloading is a policy source reloaded while the live check waits: it
// gives the first snapshot until CheckNow runs, the second after.
type reloading struct {
	snaps    [2]PolicySnapshot
	reloaded bool
}

func (r *reloading) snap() PolicySnapshot {
	if r.reloaded {
		return r.snaps[1]
	}
	return r.snaps[0]
}
func (r *reloading) Snapshot() PolicySnapshot                   { return r.snap() }
func (r *reloading) Current() *agentv1.PolicySet                { return r.snap().Set }
func (r *reloading) Scopes() map[string]decision.Scope          { return r.snap().Scopes }
func (r *reloading) Rollout() map[string]decision.PolicyRollout { return r.snap().Rollout }
func (r *reloading) Connected(string) bool                      { return true }
func (r *reloading) CheckNow(context.Context, string, time.Duration) (*ingest.Accepted, error) {
	r.reloaded = true
	return &ingest.Accepted{Report: report(agentv1.PolicyStatus_POLICY_STATUS_FAIL, now), Stored: storage.Report{ReceivedAt: now}}, nil
}

// settingsRollout gives the settings of the source's set at the time it
// is asked, as rollout.Source does.
type settingsRollout struct{ src *reloading }

func (s settingsRollout) Inputs(context.Context, string, string, time.Time) (decision.Rollout, error) {
	return decision.Rollout{Policies: s.src.Rollout()}, nil
}

// TestGateDecidesOnOneReload: a reload that lands while the live check
// waits does not mix sets: the decision judges the set it began with
// under that set's modes, not the new set's.
func TestGateDecidesOnOneReload(t *testing.T) {
	t.Parallel()
	// v1: FileVault enforced; v2: FileVault monitored.
	src := &reloading{snaps: [2]PolicySnapshot{
		{Set: policies},
		{Set: &agentv1.PolicySet{Version: "v2", Policies: policies.Policies}, Rollout: map[string]decision.PolicyRollout{"filevault": {Enforcement: decision.Monitor}}},
	}}
	st := &fakeStore{dev: &storage.Device{ID: "dev1"}, report: stored(report(agentv1.PolicyStatus_POLICY_STATUS_FAIL, now.Add(-time.Hour)))}
	g := &Gate{Store: st, Checker: src, Policies: src, Scopes: src, Rollout: settingsRollout{src}, LiveCheckTimeout: 50 * time.Millisecond, Now: func() time.Time { return now }}
	d, err := g.Decide(context.Background(), Query{DeviceID: "dev1", Username: "ada"}, LiveAlways)
	if err != nil {
		t.Fatal(err)
	}
	if !src.reloaded || d.PolicySetVersion != "v1" || d.Allow || d.Mode != decision.ModeEnforce {
		t.Fatalf("reloaded %v: decided on set %q: allow %v mode %q; want v1's enforced denial", src.reloaded, d.PolicySetVersion, d.Allow, d.Mode)
	}
}
