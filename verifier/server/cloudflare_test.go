package server_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"testing"
	"time"

	"github.com/clearance/clearance/internal/cfsim"
	"github.com/clearance/clearance/internal/protoagent"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/config"
	"github.com/clearance/clearance/verifier/storage"
)

func (h *harness) cloudflareClient(addr string) *cfsim.Client {
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(h.rootPEM)
	return &cfsim.Client{URL: "https://" + addr + "/cloudflare/v1/posture", HTTP: &http.Client{Timeout: 20 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"}}}}
}

// TestCloudflareEndpoint: the posture endpoint is on the HTTP listener only
// when Cloudflare is configured, and scores a Mac by the server's own
// decision: 100 while its report is fresh and passing, 0 once it is older
// than --max-posture-age, each answer in the decision log.
func TestCloudflareEndpoint(t *testing.T) {
	t.Parallel()
	access, err := cfsim.New("clearance-test", "aud-1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(access.Close)
	ctx := context.Background()

	off := start(t)
	token, _ := access.ServiceToken(off.clock.Now()).Sign()
	for _, addr := range []string{off.srv.HTTPAddr.String(), off.srv.SSOAddr.String()} {
		if status, _, err := off.cloudflareClient(addr).Post(ctx, token, []byte(`{"devices":[]}`)); err != nil || status != http.StatusNotFound {
			t.Errorf("not configured, %s: HTTP %d, %v; want 404", addr, status, err)
		}
	}

	h := startWith(t, func(c *config.Config) {
		c.CloudflareTeam, c.CloudflareAUD, c.CloudflareCertsURL = "https://clearance-test.cloudflareaccess.com", "aud-1", access.CertsURL()
		c.CloudflareScoreCompliant, c.CloudflareScoreWarn = 100, 90
	})
	a, err := protoagent.New(h.addr, h.rootPEM, nextUUID())
	if err != nil {
		t.Fatal(err)
	}
	a.Facts.SerialNumber = "SRVTEST0001"
	if _, err := a.Enroll(h.ctx(), h.secret()); err != nil {
		t.Fatal(err)
	}
	st := h.connect(a)
	if m, err := st.Exchange(protoagent.Sign(a.Key, a.Report(st.PolicySet, 1, h.clock.Now(), nil, agentv1.PolicyStatus_POLICY_STATUS_PASS))); err != nil || m.GetAck() == nil {
		t.Fatalf("report not acked: %v %v", m, err)
	}

	c := h.cloudflareClient(h.srv.HTTPAddr.String())
	token, _ = access.ServiceToken(h.clock.Now()).Sign()
	ask := []cfsim.Device{{DeviceID: "cf-1", Email: "ana@example.com", SerialNumber: "srvtest0001"}}
	resp, err := c.Score(ctx, token, ask)
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Result["cf-1"]; got.Score != 100 || got.S2SID != a.DeviceID {
		t.Fatalf("fresh passing Mac: %+v, want 100 for %s", got, a.DeviceID)
	}

	h.clock.Add(h.cfg.MaxPostureAge + time.Second)
	token, _ = access.ServiceToken(h.clock.Now()).Sign()
	if resp, err = c.Score(ctx, token, ask); err != nil {
		t.Fatal(err)
	}
	if got := resp.Result["cf-1"]; got.Score != 0 || got.S2SID != a.DeviceID {
		t.Fatalf("stale Mac: %+v, want 0", got)
	}
	ds, err := h.srv.Store.ListDecisions(ctx, storage.DecisionFilter{DeviceID: a.DeviceID})
	if err != nil || len(ds) != 2 {
		t.Fatalf("decisions: %v, %v; want 2", ds, err)
	}
	if ds[0].Reason != "stale_posture" || ds[0].Score != 0 || ds[1].Reason != "allowed" || ds[1].Score != 100 ||
		ds[0].Source != storage.SourceCloudflare || ds[0].RequestID != "cf-1" || ds[0].Username != "ana@example.com" || ds[0].LiveCheck != "none" {
		t.Fatalf("decision log: %+v", ds)
	}
}

// TestCloudflareGraceRecorded: a Mac that only Cloudflare asks about, and
// that fails a policy with a grace period, starts its grace at the first
// request that finds it failing, as a sign-in would: the grace is recorded
// and not started again by later requests, so that it ends.
func TestCloudflareGraceRecorded(t *testing.T) {
	t.Parallel()
	access, err := cfsim.New("clearance-test", "aud-1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(access.Close)
	e := startRollout(t, "    grace: 72h\n", func(c *config.Config) {
		c.CloudflareTeam, c.CloudflareAUD, c.CloudflareCertsURL = "https://clearance-test.cloudflareaccess.com", "aud-1", access.CertsURL()
		c.CloudflareScoreCompliant, c.CloudflareScoreWarn = 100, 90
	})
	a := failingMac(t, e)
	c := e.cloudflareClient(e.srv.HTTPAddr.String())
	ask := []cfsim.Device{{DeviceID: "cf-1", SerialNumber: a.Facts.GetSerialNumber()}}
	score := func() int {
		t.Helper()
		token, _ := access.ServiceToken(e.clock.Now()).Sign()
		resp, err := c.Score(context.Background(), token, ask)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Result["cf-1"].Score
	}
	first := e.clock.Now()
	if got := score(); got != 90 {
		t.Fatalf("failing within its grace: score %d, want 90", got)
	}
	e.clock.Add(time.Minute)
	if got := score(); got != 90 {
		t.Fatalf("a minute later: score %d, want 90", got)
	}
	starts, err := e.srv.Store.GraceStarts(context.Background(), a.DeviceID)
	if err != nil || !starts["firewall"].Equal(first) {
		t.Fatalf("grace starts %v, %v; want firewall's at the first request, %v", starts, err, first)
	}
}
