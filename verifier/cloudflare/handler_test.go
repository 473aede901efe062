package cloudflare_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clearance/clearance/verifier/access"
	"github.com/clearance/clearance/verifier/cloudflare"
	"github.com/clearance/clearance/verifier/decision"
	"github.com/clearance/clearance/verifier/reason"
	"github.com/clearance/clearance/verifier/storage"
)

// fakeStore holds devices and records decisions; errors are injected.
type fakeStore struct {
	storage.DecisionStore // unused methods panic
	devices               []storage.Device
	findErr, appendErr    error
	mu                    sync.Mutex
	recorded              []storage.DecisionRecord
}

func (s *fakeStore) DevicesBySerial(_ context.Context, serials []string) ([]storage.Device, error) {
	var out []storage.Device
	for _, d := range s.devices {
		for _, v := range serials {
			if storage.CanonicalSerial(d.SerialNumber) == v {
				out = append(out, d)
			}
		}
	}
	return out, s.findErr
}

func (s *fakeStore) DevicesByHostname(_ context.Context, names []string) ([]storage.Device, error) {
	var out []storage.Device
	for _, d := range s.devices {
		for _, n := range names {
			if storage.HostnameKey(d.Hostname) == n {
				out = append(out, d)
			}
		}
	}
	return out, s.findErr
}

func (s *fakeStore) AppendDecisions(_ context.Context, ds []storage.DecisionRecord) error {
	if s.appendErr != nil {
		return s.appendErr
	}
	s.mu.Lock()
	s.recorded = append(s.recorded, ds...)
	s.mu.Unlock()
	return nil
}

// fakeDecider decides by device id.
type fakeDecider map[string]decision.Decision

func (f fakeDecider) Decide(_ context.Context, q access.Query, mode access.Mode) (decision.Decision, error) {
	if mode != access.StoredOnly {
		return decision.Decision{}, errors.New("a Cloudflare batch must not live-check")
	}
	d, ok := f[q.DeviceID]
	if !ok {
		return decision.Decision{}, access.ErrStorage
	}
	d.DeviceID = q.DeviceID
	return d, nil
}

type okTokens struct{}

func (okTokens) Verify(context.Context, string) (*cloudflare.Claims, error) {
	return &cloudflare.Claims{CommonName: "svc.access"}, nil
}

func post(t *testing.T, h http.Handler, body string) (int, cloudflare.Response) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, cloudflare.Path, strings.NewReader(body))
	req.Header.Set(cloudflare.Header, "token")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var resp cloudflare.Response
	if rec.Code == http.StatusOK {
		if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
			t.Fatalf("answer is not JSON: %v", err)
		}
	}
	return rec.Code, resp
}

func TestHandlerScores(t *testing.T) {
	t.Parallel()
	revokedAt := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	store := &fakeStore{devices: []storage.Device{
		{ID: "mac-ok", SerialNumber: "SER1", Hostname: "Anas-MacBook-Pro"},
		{ID: "mac-old", SerialNumber: "ser2", RevokedAt: revokedAt, LastSeen: revokedAt.Add(time.Hour)},
		{ID: "mac-new", SerialNumber: "SER2", LastSeen: revokedAt},
		{ID: "mac-warn", SerialNumber: "SER3"},
		{ID: "mac-fail", SerialNumber: "SER4"},
		{ID: "mac-broken", SerialNumber: "SER5"},
		{ID: "twin-a", SerialNumber: "TA", Hostname: "twin"},
		{ID: "twin-b", SerialNumber: "TB", Hostname: "TWIN.local"},
		{ID: "mac-kate", SerialNumber: "SER6", Hostname: "kate-mac"},
		{ID: "mac-legacy", Hostname: "old-mac"},
	}}
	decide := fakeDecider{
		"mac-ok": {Allow: true, Reason: reason.Allowed}, "mac-new": {Allow: true, Reason: reason.Allowed},
		"mac-kate": {Allow: true, Reason: reason.Allowed}, "mac-legacy": {Allow: true, Reason: reason.Allowed},
		"mac-warn": {Allow: true, Reason: reason.Allowed, Advisory: []decision.Finding{{PolicyID: "screen_lock", Status: decision.StatusFail}}},
		"mac-fail": {Reason: reason.PolicyFailed},
	}
	body := `{"devices":[
		{"device_id":"c-ok","serial_number":"ser1","email":"ana@example.com"},
		{"device_id":"c-replaced","serial_number":"SER2"},
		{"device_id":"c-warn","serial_number":"SER3"},
		{"device_id":"c-fail","serial_number":"SER4"},
		{"device_id":"c-broken","serial_number":"SER5"},
		{"device_id":"c-byname","hostname":"anas-macbook-pro.local"},
		{"device_id":"c-twin","hostname":"twin"},
		{"device_id":"c-kate","hostname":"KATE-MAC.local"},
		{"device_id":"c-kelvin","hostname":"\u212Aate-mac"},
		{"device_id":"c-namesake","serial_number":"C02PERSONAL1","hostname":"Anas-MacBook-Pro"},
		{"device_id":"c-vm","serial_number":"VMware-56 4d 2b 1a","hostname":"Anas-MacBook-Pro"},
		{"device_id":"c-oem","serial_number":"To Be Filled By O.E.M.","hostname":"anas-macbook-pro.local"},
		{"device_id":"c-legacy","serial_number":"C02LEGACY001","hostname":"old-mac.local"},
		{"device_id":"c-none"}]}`
	for _, byName := range []bool{false, true} {
		store.recorded = nil
		h := &cloudflare.Handler{Tokens: okTokens{}, Store: store, Decide: decide, Scores: cloudflare.DefaultScores,
			MatchHostname: byName, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
		code, resp := post(t, h, body)
		if code != http.StatusOK {
			t.Fatalf("HTTP %d", code)
		}
		want := map[string]cloudflare.Result{
			"c-ok": {S2SID: "mac-ok", Score: 100}, "c-replaced": {S2SID: "mac-new", Score: 100},
			"c-warn": {S2SID: "mac-warn", Score: 90}, "c-fail": {S2SID: "mac-fail", Score: 0},
			"c-broken": {S2SID: "mac-broken", Score: 0}, "c-twin": {}, "c-none": {}, "c-byname": {},
			"c-kate": {}, "c-kelvin": {}, "c-namesake": {}, "c-legacy": {}, "c-vm": {}, "c-oem": {},
		}
		if byName {
			// Hostnames fold A-Z only: a Kelvin sign is not a k.
			want["c-byname"] = cloudflare.Result{S2SID: "mac-ok", Score: 100}
			want["c-kate"] = cloudflare.Result{S2SID: "mac-kate", Score: 100}
			// A serial number that is not the hostname's Mac's is another
			// machine of that name; a Mac that enrolled with none is matched.
			want["c-legacy"] = cloudflare.Result{S2SID: "mac-legacy", Score: 100}
		}
		if len(resp.Result) != len(want) {
			t.Errorf("match_hostname=%v: %d answers, want %d", byName, len(resp.Result), len(want))
		}
		for id, w := range want {
			if got := resp.Result[id]; got != w {
				t.Errorf("match_hostname=%v: %s = %+v, want %+v", byName, id, got, w)
			}
		}
		if len(store.recorded) != len(want) {
			t.Fatalf("%d decisions recorded, want %d", len(store.recorded), len(want))
		}
		for _, r := range store.recorded {
			if r.Source != storage.SourceCloudflare || r.Score != resp.Result[r.RequestID].Score || r.DeviceID != resp.Result[r.RequestID].S2SID {
				t.Errorf("recorded %+v, answered %+v", r, resp.Result[r.RequestID])
			}
			switch r.RequestID {
			case "c-broken":
				if r.Reason != string(reason.Storage) {
					t.Errorf("c-broken recorded with reason %q, want %q", r.Reason, reason.Storage)
				}
			case "c-none":
				if r.Reason != string(reason.UnknownDevice) {
					t.Errorf("c-none recorded with reason %q", r.Reason)
				}
			case "c-ok":
				if r.Username != "ana@example.com" || !r.Allow {
					t.Errorf("c-ok recorded as %+v", r)
				}
			}
		}
	}
}

// TestHandlerStorageFailures: nothing is answered that the decision log
// does not hold, and a lookup that fails answers nothing.
func TestHandlerStorageFailures(t *testing.T) {
	t.Parallel()
	body := `{"devices":[{"device_id":"c1","serial_number":"S1"}]}`
	for name, store := range map[string]*fakeStore{
		"lookup":  {findErr: errors.New("disk I/O error")},
		"records": {appendErr: errors.New("database is locked")},
	} {
		h := &cloudflare.Handler{Tokens: okTokens{}, Store: store, Decide: fakeDecider{}, Scores: cloudflare.DefaultScores,
			Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
		if code, _ := post(t, h, body); code != http.StatusServiceUnavailable {
			t.Errorf("%s failing: HTTP %d, want 503", name, code)
		}
	}
}

// graceFunc is a GraceRecorder.
type graceFunc func(decision.Decision) error

func (f graceFunc) Record(_ context.Context, d decision.Decision) error { return f(d) }

// TestHandlerRecordsGrace: each matched device's decision goes to the
// grace recorder, as a sign-in's does; one that cannot be recorded scores
// 0 (its grace would start again at every request, and never end), and
// the other devices of the batch are answered.
func TestHandlerRecordsGrace(t *testing.T) {
	t.Parallel()
	store := &fakeStore{devices: []storage.Device{{ID: "mac-a", SerialNumber: "S1"}, {ID: "mac-b", SerialNumber: "S2"}}}
	warn := decision.Decision{Reason: reason.PolicyFailed, CanContinue: true}
	var mu sync.Mutex
	seen := map[string]bool{}
	h := &cloudflare.Handler{Tokens: okTokens{}, Store: store, Decide: fakeDecider{"mac-a": warn, "mac-b": warn},
		Scores: cloudflare.DefaultScores, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Grace: graceFunc(func(d decision.Decision) error {
			mu.Lock()
			defer mu.Unlock()
			seen[d.DeviceID] = true
			if d.DeviceID == "mac-b" {
				return errors.New("database is locked")
			}
			return nil
		})}
	code, resp := post(t, h, `{"devices":[{"device_id":"c1","serial_number":"S1"},{"device_id":"c2","serial_number":"S2"},{"device_id":"c3","serial_number":"S3"}]}`)
	if code != http.StatusOK {
		t.Fatalf("HTTP %d", code)
	}
	if !seen["mac-a"] || !seen["mac-b"] || len(seen) != 2 {
		t.Fatalf("recorded %v; want the two matched devices", seen)
	}
	if got := resp.Result["c1"].Score; got != cloudflare.DefaultScores.Warning {
		t.Errorf("recorded grace: score %d, want the warning score", got)
	}
	if got := resp.Result["c2"].Score; got != 0 {
		t.Errorf("grace not recorded: score %d, want 0", got)
	}
	for _, r := range store.recorded {
		if r.DeviceID == "mac-b" && r.Reason != string(reason.Storage) {
			t.Errorf("mac-b recorded as %q, want %q", r.Reason, reason.Storage)
		}
	}
}

func TestScores(t *testing.T) {
	t.Parallel()
	for _, s := range []cloudflare.Scores{{0, 0}, {100, 0}, {101, 90}, {80, 90}} {
		if err := s.Check(); err == nil {
			t.Errorf("%+v accepted", s)
		}
	}
	if err := cloudflare.DefaultScores.Check(); err != nil {
		t.Fatal(err)
	}
	for _, d := range []decision.Decision{{Reason: reason.StalePosture}, {Reason: reason.DeviceRevoked}, {Reason: reason.UnknownDevice}, {Reason: reason.PolicyFailed}} {
		if score, verdict := cloudflare.DefaultScores.For(d); score != 0 || verdict != string(d.Reason) {
			t.Errorf("%s: %d %s", d.Reason, score, verdict)
		}
	}
	// Rollout settings never score as compliance.
	for name, d := range map[string]decision.Decision{
		"monitor or exempt": {Allow: true, Reason: reason.Allowed, WouldDeny: reason.PolicyFailed},
		"warn (Continue)":   {Reason: reason.PolicyFailed, CanContinue: true},
		"advisory failing":  {Allow: true, Reason: reason.Allowed, Advisory: []decision.Finding{{PolicyID: "x"}}},
	} {
		if score, verdict := cloudflare.DefaultScores.For(d); score != cloudflare.DefaultScores.Warning || verdict != cloudflare.VerdictWarning {
			t.Errorf("%s: %d %s, want the warning score", name, score, verdict)
		}
	}
	if score, _ := cloudflare.DefaultScores.For(decision.Decision{Allow: true, Reason: reason.Allowed}); score != cloudflare.DefaultScores.Compliant {
		t.Errorf("compliant: %d", score)
	}
}

// badTokens refuses every token for a reason the sender chose.
type badTokens struct{}

func (badTokens) Verify(_ context.Context, tok string) (*cloudflare.Claims, error) {
	return nil, &cloudflare.TokenError{Reason: cloudflare.RefusedMalformed, Err: errors.New("kid " + tok + " unknown")}
}

// TestRefusedTokensLogSampled: anyone can send refused tokens, so a flood
// of them is a warn line per reason every 10 s saying how many were left
// out, each quoting at most a bounded part of what the sender wrote.
func TestRefusedTokensLogSampled(t *testing.T) {
	t.Parallel()
	var logs strings.Builder
	now := time.Unix(1_800_000_000, 0)
	h := &cloudflare.Handler{Tokens: badTokens{}, Store: &fakeStore{}, Decide: fakeDecider{}, Scores: cloudflare.DefaultScores,
		Log: slog.New(slog.NewTextHandler(&logs, nil)), Now: func() time.Time { return now }}
	flood := strings.Repeat("A", 8000)
	for range 1000 {
		req := httptest.NewRequest(http.MethodPost, cloudflare.Path, strings.NewReader(`{}`))
		req.Header.Set(cloudflare.Header, flood)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusForbidden {
			t.Fatalf("HTTP %d, want 403", rec.Code)
		}
	}
	now = now.Add(11 * time.Second)
	req := httptest.NewRequest(http.MethodPost, cloudflare.Path, strings.NewReader(`{}`))
	req.Header.Set(cloudflare.Header, "x")
	h.ServeHTTP(httptest.NewRecorder(), req)
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[1], "others_not_logged=999") {
		t.Fatalf("%d log lines, want 2, the second counting 999 left out:\n%.2000s", len(lines), logs.String())
	}
	if n := len(logs.String()); n > 2000 {
		t.Errorf("%d bytes of log for 1,001 refusals", n)
	}
}

// TestHandlerSharedSerial: an enroll secret lets anyone enroll a made-up
// hardware UUID that claims another Mac's serial number. While more than
// one unrevoked device has a serial, none of them decides its score: the
// device is scored as unknown, whichever was seen last and whatever they
// report, and not matched by hostname instead. A revoked device never
// makes a serial shared.
func TestHandlerSharedSerial(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	pass := decision.Decision{Allow: true, Reason: reason.Allowed}
	fail := decision.Decision{Reason: reason.PolicyFailed}
	revoked := decision.Decision{Reason: reason.DeviceRevoked}
	for _, tc := range []struct {
		name           string
		real, claimant storage.Device
		decide         fakeDecider
		want           cloudflare.Result
		wantReason     reason.Code
	}{
		{
			name:     "failing Mac, passing claimant seen last",
			real:     storage.Device{ID: "mac-real", SerialNumber: "C02XK1ABJGH5", Hostname: "anas-mbp", LastSeen: t0},
			claimant: storage.Device{ID: "mac-claimant", SerialNumber: "c02xk1abjgh5", LastSeen: t0.Add(time.Hour)},
			decide:   fakeDecider{"mac-real": fail, "mac-claimant": pass},
			want:     cloudflare.Result{}, wantReason: reason.UnknownDevice,
		},
		{
			name:     "passing Mac seen last, failing claimant",
			real:     storage.Device{ID: "mac-real", SerialNumber: "C02XK1ABJGH5", Hostname: "anas-mbp", LastSeen: t0.Add(time.Hour)},
			claimant: storage.Device{ID: "mac-claimant", SerialNumber: "C02XK1ABJGH5", LastSeen: t0},
			decide:   fakeDecider{"mac-real": pass, "mac-claimant": fail},
			want:     cloudflare.Result{}, wantReason: reason.UnknownDevice,
		},
		{
			name:     "both passing",
			real:     storage.Device{ID: "mac-real", SerialNumber: "C02XK1ABJGH5", Hostname: "anas-mbp", LastSeen: t0},
			claimant: storage.Device{ID: "mac-claimant", SerialNumber: "C02XK1ABJGH5", LastSeen: t0},
			decide:   fakeDecider{"mac-real": pass, "mac-claimant": pass},
			want:     cloudflare.Result{}, wantReason: reason.UnknownDevice,
		},
		{
			name:     "claimant revoked and seen last: the Mac decides",
			real:     storage.Device{ID: "mac-real", SerialNumber: "C02XK1ABJGH5", Hostname: "anas-mbp", LastSeen: t0},
			claimant: storage.Device{ID: "mac-claimant", SerialNumber: "C02XK1ABJGH5", RevokedAt: t0, LastSeen: t0.Add(time.Hour)},
			decide:   fakeDecider{"mac-real": fail, "mac-claimant": pass},
			want:     cloudflare.Result{S2SID: "mac-real"}, wantReason: reason.PolicyFailed,
		},
		{
			name:     "old logic board revoked: the new one decides",
			real:     storage.Device{ID: "mac-real", SerialNumber: "C02XK1ABJGH5", Hostname: "anas-mbp", LastSeen: t0},
			claimant: storage.Device{ID: "mac-old-board", SerialNumber: "C02XK1ABJGH5", RevokedAt: t0, LastSeen: t0.Add(time.Hour)},
			decide:   fakeDecider{"mac-real": pass, "mac-old-board": fail},
			want:     cloudflare.Result{S2SID: "mac-real", Score: 100}, wantReason: reason.Allowed,
		},
		{
			name:     "both revoked: the one seen last decides, and denies",
			real:     storage.Device{ID: "mac-real", SerialNumber: "C02XK1ABJGH5", Hostname: "anas-mbp", RevokedAt: t0, LastSeen: t0},
			claimant: storage.Device{ID: "mac-claimant", SerialNumber: "C02XK1ABJGH5", RevokedAt: t0, LastSeen: t0.Add(time.Hour)},
			decide:   fakeDecider{"mac-real": revoked, "mac-claimant": revoked},
			want:     cloudflare.Result{S2SID: "mac-claimant"}, wantReason: reason.DeviceRevoked,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for _, byName := range []bool{false, true} {
				store := &fakeStore{devices: []storage.Device{tc.real, tc.claimant}}
				var logs strings.Builder
				h := &cloudflare.Handler{Tokens: okTokens{}, Store: store, Decide: tc.decide, Scores: cloudflare.DefaultScores,
					MatchHostname: byName, Log: slog.New(slog.NewTextHandler(&logs, nil))}
				code, resp := post(t, h, `{"devices":[{"device_id":"c-1","serial_number":"C02XK1ABJGH5","hostname":"anas-mbp","email":"ana@example.com"}]}`)
				if code != http.StatusOK {
					t.Fatalf("HTTP %d", code)
				}
				if got := resp.Result["c-1"]; got != tc.want {
					t.Errorf("match_hostname=%v: answered %+v, want %+v", byName, got, tc.want)
				}
				if len(store.recorded) != 1 {
					t.Fatalf("%d decisions recorded, want 1", len(store.recorded))
				}
				if r := store.recorded[0]; r.Reason != string(tc.wantReason) || r.DeviceID != tc.want.S2SID || r.Score != tc.want.Score {
					t.Errorf("match_hostname=%v: recorded device %q reason %q score %d, want %q %q %d",
						byName, r.DeviceID, r.Reason, r.Score, tc.want.S2SID, tc.wantReason, tc.want.Score)
				}
				shared := strings.Contains(logs.String(), "cloudflare_serial_shared")
				if wantShared := tc.wantReason == reason.UnknownDevice; shared != wantShared {
					t.Errorf("match_hostname=%v: shared serial logged %v, want %v:\n%s", byName, shared, wantShared, logs.String())
				}
				if shared && !strings.Contains(logs.String(), "serial=C02XK1ABJGH5 devices=2 ") {
					t.Errorf("the warn line does not name the serial and its 2 devices:\n%s", logs.String())
				}
			}
		})
	}
}

// TestSharedSerialsLogBounded: whoever holds an enroll secret can make the
// serial number of every device in a request shared. A request of 1,000
// such devices writes one warn line, naming the first serial and counting
// the others; each of the others is at debug.
func TestSharedSerialsLogBounded(t *testing.T) {
	t.Parallel()
	var devices []storage.Device
	var body strings.Builder
	body.WriteString(`{"devices":[`)
	for i := range cloudflare.MaxDevices {
		serial := fmt.Sprintf("SER%06d", i/2) // two Cloudflare devices ask about each serial
		if i%2 == 0 {
			devices = append(devices, storage.Device{ID: "real-" + serial, SerialNumber: serial}, storage.Device{ID: "claim-" + serial, SerialNumber: serial})
		}
		if i > 0 {
			body.WriteString(",")
		}
		fmt.Fprintf(&body, `{"device_id":"c-%d","serial_number":%q}`, i, serial)
	}
	body.WriteString("]}")
	var warn, debug strings.Builder
	h := &cloudflare.Handler{Tokens: okTokens{}, Store: &fakeStore{devices: devices}, Decide: fakeDecider{}, Scores: cloudflare.DefaultScores,
		Log: slog.New(slog.NewTextHandler(&warn, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	code, resp := post(t, h, body.String())
	if code != http.StatusOK {
		t.Fatalf("HTTP %d", code)
	}
	for id, r := range resp.Result {
		if r != (cloudflare.Result{}) {
			t.Fatalf("%s answered %+v, want unknown", id, r)
		}
	}
	lines := strings.Split(strings.TrimSpace(warn.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "level=WARN") || !strings.Contains(lines[0], "serial=SER000000 devices=2 others_not_logged=499") {
		t.Fatalf("%d warn lines, want 1 naming SER000000 and counting 499 others:\n%.2000s", len(lines), warn.String())
	}

	h.Log = slog.New(slog.NewTextHandler(&debug, &slog.HandlerOptions{Level: slog.LevelDebug}))
	post(t, h, body.String())
	if n := strings.Count(debug.String(), "cloudflare_serial_shared"); n != 500 {
		t.Errorf("%d lines name a shared serial at debug level, want 500 (one a serial)", n)
	}
}

// TestSharedHostnamesLogBounded: with hostname matching, a request whose
// every device names a hostname several devices have writes one warn line,
// its hostname (the sender's) clipped.
func TestSharedHostnamesLogBounded(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("h", cloudflare.MaxFieldLen)
	store := &fakeStore{devices: []storage.Device{{ID: "a", Hostname: long}, {ID: "b", Hostname: long + ".local"}, {ID: "c", Hostname: "twin"}, {ID: "d", Hostname: "TWIN"}}}
	var body strings.Builder
	body.WriteString(`{"devices":[`)
	for i := range cloudflare.MaxDevices {
		if i > 0 {
			body.WriteString(",")
		}
		name := long
		if i%2 == 1 {
			name = "twin.local"
		}
		fmt.Fprintf(&body, `{"device_id":"c-%d","hostname":%q}`, i, name)
	}
	body.WriteString("]}")
	var logs strings.Builder
	h := &cloudflare.Handler{Tokens: okTokens{}, Store: store, Decide: fakeDecider{}, Scores: cloudflare.DefaultScores,
		MatchHostname: true, Log: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	code, resp := post(t, h, body.String())
	if code != http.StatusOK || len(resp.Result) != cloudflare.MaxDevices || resp.Result["c-0"] != (cloudflare.Result{}) || resp.Result["c-1"] != (cloudflare.Result{}) {
		t.Fatalf("HTTP %d, %d answers, c-0 %+v, c-1 %+v; want every device unknown", code, len(resp.Result), resp.Result["c-0"], resp.Result["c-1"])
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "cloudflare_hostname_shared") || !strings.Contains(lines[0], "devices=2 others_not_logged=1") {
		t.Fatalf("%d warn lines, want 1 counting 1 other hostname:\n%.2000s", len(lines), logs.String())
	}
	if strings.Contains(lines[0], strings.Repeat("h", 65)) {
		t.Errorf("the hostname is not clipped: %s", lines[0])
	}
}

// TestHandlerRecordsRollout: an evaluation is recorded with its mode and
// each failing policy's enforcement and waiver, as a sign-in is, so the
// rollout reports (decisions --mode monitor, warn) find the Macs only
// Cloudflare asks about.
func TestHandlerRecordsRollout(t *testing.T) {
	t.Parallel()
	store := &fakeStore{devices: []storage.Device{{ID: "mac-a", SerialNumber: "S1"}, {ID: "mac-b", SerialNumber: "S2"}}}
	fv := decision.Finding{PolicyID: "filevault", Status: decision.StatusFail, Required: true, Critical: true, Enforcement: decision.Warn}
	fw := decision.Finding{PolicyID: "firewall", Status: decision.StatusFail, Required: true, Enforcement: decision.Monitor, Waiver: decision.WaiverMonitor}
	warn := decision.Decision{Reason: reason.PolicyFailed, CanContinue: true, Mode: decision.ModeWarn,
		Results: []decision.Finding{fv, fw}, Failing: []decision.Finding{fv, fw}}
	monitor := decision.Decision{Allow: true, Reason: reason.Allowed, WouldDeny: reason.PolicyFailed, Mode: decision.ModeMonitor,
		Results: []decision.Finding{fw}, Failing: []decision.Finding{fw}}
	h := &cloudflare.Handler{Tokens: okTokens{}, Store: store, Decide: fakeDecider{"mac-a": warn, "mac-b": monitor},
		Scores: cloudflare.DefaultScores, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if code, _ := post(t, h, `{"devices":[{"device_id":"c1","serial_number":"S1"},{"device_id":"c2","serial_number":"S2"}]}`); code != http.StatusOK {
		t.Fatalf("HTTP %d", code)
	}
	got := map[string]storage.DecisionRecord{}
	for _, r := range store.recorded {
		got[r.DeviceID] = r
	}
	a, b := got["mac-a"], got["mac-b"]
	if a.Mode != "warn" || !a.Allow || a.Score != cloudflare.DefaultScores.Warning || len(a.Results) != 2 ||
		a.Results[0].Enforcement != "warn" || a.Results[0].Waiver != "" || a.Results[1].Waiver != "monitor" {
		t.Errorf("warn recorded as %+v", a)
	}
	if b.Mode != "monitor" || !b.Allow || b.Reason != "allowed" || len(b.Results) != 1 || b.Results[0].Waiver != "monitor" || b.Results[0].Enforcement != "monitor" {
		t.Errorf("monitor recorded as %+v", b)
	}
}
