package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clearance/clearance/internal/cfsim"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
)

const cfAUD = "4714c1358e65fe4b408ad6d432a5f878f08194bdb4752441fd56faefa9b2b6f2"

// startCloudflareVerifier starts a verifier whose posture endpoint trusts
// the stand-in Access a, with a short --max-posture-age so a Mac goes
// stale within the test.
func startCloudflareVerifier(t *testing.T, dataDir, certsURL string, extra ...string) *verifier {
	t.Helper()
	args := append([]string{"--cloudflare-team", "clearance-test", "--cloudflare-aud", cfAUD, "--cloudflare-certs-url", certsURL,
		"--max-posture-age", "10s", "--live-check-after", "5s"}, append(offSSO, extra...)...)
	return startVerifierArgs(t, dataDir, args...)
}

func newCloudflare(t *testing.T) *cfsim.Access {
	t.Helper()
	a, err := cfsim.New("clearance-test", cfAUD)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a
}

// cfClient posts to v's posture endpoint, trusting v's CA.
func cfClient(v *verifier) *cfsim.Client {
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(v.rootPEM())
	return &cfsim.Client{URL: "https://" + v.httpAddr + "/cloudflare/v1/posture", HTTP: &http.Client{Timeout: 60 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"}}}}
}

func mustSign(t *testing.T, tok cfsim.Token) string {
	t.Helper()
	s, err := tok.Sign()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// writeFixture writes the Mac fixture src with its hardware UUID and
// serial number replaced.
func writeFixture(t *testing.T, src, dst, uuid, serial string) {
	t.Helper()
	raw, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	raw = bytes.ReplaceAll(raw, []byte("5A1C7E2B-9D4F-4B8A-A3E6-0C2D71F9B846"), []byte(uuid))
	raw = bytes.ReplaceAll(raw, []byte("K7Q2XW94LM"), []byte(serial))
	if err := os.WriteFile(dst+".tmp", raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(dst+".tmp", dst); err != nil {
		t.Fatal(err)
	}
}

// devicesBySerial lists the enrolled devices that have reported, by serial.
func devicesBySerial(t *testing.T, v *verifier) map[string]*adminv1.GetDeviceResponse {
	t.Helper()
	admin, ctx := v.admin()
	list, err := admin.ListDevices(ctx, &adminv1.ListDevicesRequest{PageSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*adminv1.GetDeviceResponse{}
	for _, d := range list.GetDevices() {
		got, err := admin.GetDevice(ctx, &adminv1.GetDeviceRequest{DeviceId: d.GetDeviceId()})
		if err != nil {
			t.Fatal(err)
		}
		out[got.GetDevice().GetFacts().GetSerialNumber()] = got
	}
	return out
}

// TestCloudflarePosture: Cloudflare's custom device posture integration,
// played by cfsim, asks the real verifier about real agents' Macs on the
// osquery stand-in: a compliant, a failing, a stale, a revoked and an
// unknown Mac, in a batch of one and in a batch of 1,000. Every device is
// answered, each with the score its sign-in decision earns, and every
// answer is in the decision log and the metrics.
func TestCloudflarePosture(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "verifier")
	access := newCloudflare(t)
	v := startCloudflareVerifier(t, dataDir, access.CertsURL())
	secret := v.enrollSecret()
	caFile := filepath.Join(dataDir, "ca.pem")

	macs := map[string]*mac{}
	for i, name := range []string{"compliant", "failing", "stale", "revoked"} {
		serial := fmt.Sprintf("CF%08d", i+1)
		uuid := fmt.Sprintf("C10DF1A2-0000-4000-8000-%012d", i+1)
		macs[name] = startMac(t, filepath.Join(dir, name), v.grpcAddr, caFile, secret, uuid, serial, "")
		if name == "failing" {
			writeFixture(t, failingMac, filepath.Join(dir, name, "mac.json"), uuid, serial)
		}
	}
	serial := func(name string) string {
		return map[string]string{"compliant": "CF00000001", "failing": "CF00000002", "stale": "CF00000003", "revoked": "CF00000004"}[name]
	}

	// 1. Every Mac enrolls and reports; the failing one fails.
	var bySerial map[string]*adminv1.GetDeviceResponse
	waitUntil(t, "four Macs reporting, one failing", within+20*time.Second, func() bool {
		bySerial = devicesBySerial(t, v)
		if len(bySerial) != 4 {
			return false
		}
		for _, name := range []string{"compliant", "failing", "stale", "revoked"} {
			d := bySerial[serial(name)]
			if d == nil || d.GetDevice().GetLastSeq() == 0 || d.GetDevice().GetSummary().GetCompliant() != (name != "failing") {
				return false
			}
		}
		return true
	})
	id := func(name string) string { return bySerial[serial(name)].GetDevice().GetDeviceId() }

	// 2. One is revoked, one's agent stops and its posture goes stale.
	admin, ctx := v.admin()
	if _, err := admin.RevokeDevice(ctx, &adminv1.RevokeDeviceRequest{DeviceId: id("revoked"), Reason: "lost"}); err != nil {
		t.Fatal(err)
	}
	macs["stale"].agent.stop()
	staleSince := time.Now()

	c := cfClient(v)
	cctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	token := mustSign(t, access.ServiceToken(time.Now()))

	// 3. A batch of one: the compliant Mac scores 100.
	one := []cfsim.Device{{DeviceID: "cf-compliant", Email: "ana@example.com", SerialNumber: serial("compliant"), Hostname: "Anas-MacBook-Pro"}}
	resp, err := c.Score(cctx, token, one)
	if err != nil {
		t.Fatalf("batch of 1: %v", err)
	}
	if got := resp.Result["cf-compliant"]; got.Score != 100 || got.S2SID != id("compliant") {
		t.Fatalf("compliant Mac: %+v, want score 100, s2s_id %s", got, id("compliant"))
	}

	// 4. A batch of 1,000 once the stopped Mac's posture is stale.
	time.Sleep(time.Until(staleSince.Add(12 * time.Second)))
	batch := []cfsim.Device{
		{DeviceID: "cf-compliant", Email: "ana@example.com", SerialNumber: strings.ToLower(serial("compliant"))},
		{DeviceID: "cf-failing", Email: "bo@example.com", SerialNumber: serial("failing")},
		{DeviceID: "cf-stale", Email: "cy@example.com", SerialNumber: serial("stale")},
		{DeviceID: "cf-revoked", Email: "di@example.com", SerialNumber: serial("revoked")},
		{DeviceID: "cf-unknown", Email: "ed@example.com", SerialNumber: "NOTENROLLED1"},
		{DeviceID: "cf-no-serial", Email: "fi@example.com", Hostname: "somewhere"},
	}
	for i := len(batch); i < 1000; i++ {
		batch = append(batch, cfsim.Device{DeviceID: fmt.Sprintf("cf-%04d", i), Email: fmt.Sprintf("user%d@example.com", i),
			SerialNumber: fmt.Sprintf("ZZ%08d", i), MACAddress: "aa:bb:cc:00:00:01", VirtualIPv4: "100.96.0.1", Hostname: fmt.Sprintf("mac-%d", i)})
	}
	start := time.Now()
	resp, err = c.Score(cctx, token, batch)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("batch of 1000: %v", err)
	}
	t.Logf("a batch of 1000 devices answered in %s", took)
	want := map[string]cfsim.Result{
		"cf-compliant": {S2SID: id("compliant"), Score: 100},
		"cf-failing":   {S2SID: id("failing"), Score: 0},
		"cf-stale":     {S2SID: id("stale"), Score: 0},
		"cf-revoked":   {S2SID: id("revoked"), Score: 0},
		"cf-unknown":   {S2SID: "", Score: 0},
		"cf-no-serial": {S2SID: "", Score: 0},
		"cf-0500":      {S2SID: "", Score: 0},
	}
	for dev, w := range want {
		if got := resp.Result[dev]; got != w {
			t.Errorf("%s: %+v, want %+v", dev, got, w)
		}
	}

	// 5. Every answer is in the decision log, as a Cloudflare evaluation
	// with its reason and score.
	db := openSQLite(t, dataDir)
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM decisions WHERE source = 'cloudflare'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1001 {
		t.Errorf("%d Cloudflare evaluations in the decision log, want 1001", n)
	}
	wantReasons := map[string]struct {
		reason string
		score  int
		device string
	}{
		"cf-compliant": {"allowed", 100, id("compliant")}, "cf-failing": {"policy_failed", 0, id("failing")},
		"cf-stale": {"stale_posture", 0, id("stale")}, "cf-revoked": {"device_revoked", 0, id("revoked")},
		"cf-unknown": {"unknown_device", 0, ""},
	}
	for dev, w := range wantReasons {
		var reason, device, user string
		var score int
		if err := db.QueryRow(`SELECT reason, score, device_id, username FROM decisions WHERE source = 'cloudflare' AND request_id = ? ORDER BY id DESC LIMIT 1`, dev).
			Scan(&reason, &score, &device, &user); err != nil {
			t.Fatalf("%s: %v", dev, err)
		}
		if reason != w.reason || score != w.score || device != w.device || user == "" {
			t.Errorf("%s logged as %s/%d/%q/%q, want %s/%d/%q", dev, reason, score, device, user, w.reason, w.score, w.device)
		}
	}

	// 6. And in the metrics.
	if got := v.metric(t, `clearance_cloudflare_requests_total{outcome="answered"}`); got != 2 {
		t.Errorf("answered requests = %v, want 2", got)
	}
	if got := v.metric(t, `clearance_cloudflare_evaluations_total{verdict="compliant"}`); got != 2 {
		t.Errorf("compliant evaluations = %v, want 2", got)
	}
	if got := v.metric(t, `clearance_cloudflare_evaluations_total{verdict="unknown_device"}`); got != 996 {
		t.Errorf("unknown_device evaluations = %v, want 996", got)
	}
	if strings.Contains(v.logs.String(), token) {
		t.Error("the verifier's log holds the Access token")
	}
}

// TestCloudflareRefusals: the posture endpoint answers nothing to a
// request Access did not make for this application, or that breaks the
// contract, and says why in the log without the token; an independent JOSE
// implementation (npm jose) signing with the team's key is accepted, the
// same signing with another key is not. A verifier that cannot fetch the
// keys refuses everything.
func TestCloudflareRefusals(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	access := newCloudflare(t)
	v := startCloudflareVerifier(t, filepath.Join(dir, "verifier"), access.CertsURL())
	c := cfClient(v)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	now := time.Now()
	good := access.ServiceToken(now.Add(-time.Minute))
	foreign, err := cfsim.NewKey(good.Key.KID)
	if err != nil {
		t.Fatal(err)
	}
	mod := func(f func(*cfsim.Token)) string {
		tok := good
		f(&tok)
		return mustSign(t, tok)
	}
	tampered := func() string {
		parts := strings.Split(mustSign(t, good), ".")
		flip := byte('A')
		if parts[1][10] == 'A' {
			flip = 'B'
		}
		claims := parts[1][:10] + string(flip) + parts[1][11:]
		return parts[0] + "." + claims + "." + parts[2]
	}()
	devices := func(n int) []byte {
		ds := make([]cfsim.Device, n)
		for i := range ds {
			ds[i] = cfsim.Device{DeviceID: fmt.Sprintf("d%d", i), SerialNumber: fmt.Sprintf("S%06d", i)}
		}
		b, _ := json.Marshal(cfsim.Request{Devices: ds})
		return b
	}
	small := devices(1)
	huge := append([]byte(`{"devices":[{"device_id":"a","hostname":"`), bytes.Repeat([]byte("x"), 2<<20)...)
	huge = append(huge, `"}]}`...)
	valid := mustSign(t, good)
	asJSON := func() string { // the same signature, in the JWS JSON serialization
		p := strings.Split(valid, ".")
		b, _ := json.Marshal(map[string]string{"protected": p[0], "payload": p[1], "signature": p[2]})
		return string(b)
	}()

	for _, tc := range []struct {
		name, token string
		body        []byte
		status      int
		outcome     string
	}{
		{"no token", "", small, http.StatusUnauthorized, "no_token"},
		{"bad signature", tampered, small, http.StatusForbidden, "bad_signature"},
		{"foreign key", mod(func(tk *cfsim.Token) { tk.Key = foreign }), small, http.StatusForbidden, "bad_signature"},
		{"wrong aud", mod(func(tk *cfsim.Token) { tk.Audience = []string{"another-application"} }), small, http.StatusForbidden, "wrong_audience"},
		{"wrong iss", mod(func(tk *cfsim.Token) { tk.Issuer = "https://evil.cloudflareaccess.com" }), small, http.StatusForbidden, "wrong_issuer"},
		{"expired", mod(func(tk *cfsim.Token) { tk.Expiry = now.Add(-5 * time.Minute) }), small, http.StatusForbidden, "expired"},
		{"HS256", mod(func(tk *cfsim.Token) { tk.Algorithm = "HS256" }), small, http.StatusForbidden, "wrong_algorithm"},
		{"JSON serialization", asJSON, small, http.StatusForbidden, "not_compact_jws"},
		{"body over the limit", valid, huge, http.StatusRequestEntityTooLarge, "body_too_large"},
		{"1001 devices", valid, devices(1001), http.StatusRequestEntityTooLarge, "too_many_devices"},
		{"malformed JSON", valid, []byte(`{"devices":[{"device_id":"a"`), http.StatusBadRequest, "malformed_request"},
		{"no device_id", valid, []byte(`{"devices":[{"serial_number":"S1"}]}`), http.StatusBadRequest, "malformed_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := v.metric(t, `clearance_cloudflare_requests_total{outcome="`+tc.outcome+`"}`)
			status, body, err := c.Post(ctx, tc.token, tc.body)
			if err != nil {
				t.Fatal(err)
			}
			if status != tc.status || strings.Contains(string(body), "result") {
				t.Fatalf("HTTP %d %q, want %d and no result", status, body, tc.status)
			}
			if got := v.metric(t, `clearance_cloudflare_requests_total{outcome="`+tc.outcome+`"}`); got != before+1 {
				t.Errorf("%s refusals %v, want %v", tc.outcome, got, before+1)
			}
			waitUntil(t, "the log to say "+tc.outcome, 10*time.Second, func() bool {
				return strings.Contains(v.logs.String(), "reason="+tc.outcome)
			})
			if tc.token != "" && strings.Contains(v.logs.String(), tc.token) {
				t.Error("the log holds the token")
			}
		})
	}

	// npm jose, with the team's key: accepted; with a key of its own under
	// the team's kid: refused.
	t.Run("npm jose", func(t *testing.T) {
		keyFile := filepath.Join(dir, "access-key.pem")
		if err := os.WriteFile(keyFile, access.Current().PKCS8PEM(), 0o600); err != nil {
			t.Fatal(err)
		}
		tok := joseToken(t, keyFile, access.Current().KID, access.Issuer)
		if _, err := c.Score(ctx, tok, []cfsim.Device{{DeviceID: "n1", SerialNumber: "NPM1"}}); err != nil {
			t.Fatalf("a token npm jose signed with the team's key: %v", err)
		}
		tok = joseToken(t, "", access.Current().KID, access.Issuer)
		if status, _, err := c.Post(ctx, tok, small); err != nil || status != http.StatusForbidden {
			t.Fatalf("a token npm jose signed with its own key: HTTP %d, %v; want 403", status, err)
		}
	})

	// Keys that cannot be fetched: every token refused, and the log says why.
	down := startCloudflareVerifier(t, filepath.Join(dir, "down"), "http://"+freePort(t)+"/cdn-cgi/access/certs")
	status, _, err := cfClient(down).Post(ctx, valid, small)
	if err != nil || status != http.StatusForbidden {
		t.Fatalf("keys unreachable: HTTP %d, %v; want 403", status, err)
	}
	waitUntil(t, "the log to say the keys could not be fetched", 10*time.Second, func() bool {
		return strings.Contains(down.logs.String(), "cloudflare_jwks_unavailable") && strings.Contains(down.logs.String(), "reason=jwks_unavailable")
	})
}

// joseToken has npm jose (scripts/npm.sh installs it) sign an Access
// service token: with the PKCS#8 key in keyFile, or with a key it makes
// when keyFile is "".
func joseToken(t *testing.T, keyFile, kid, issuer string) string {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		required(t, "node not found: scripts/deps.sh installs it")
	}
	npmDir, _ := filepath.Abs("../scripts/npm")
	if _, err := os.Stat(filepath.Join(npmDir, "node_modules", "jose", "package.json")); err != nil {
		required(t, "npm jose not installed: run scripts/npm.sh")
	}
	const script = `
import * as jose from 'jose';
import { readFileSync } from 'node:fs';
const [keyFile, kid, iss, aud] = process.argv.slice(1);
const key = keyFile
  ? await jose.importPKCS8(readFileSync(keyFile, 'utf8'), 'RS256')
  : (await jose.generateKeyPair('RS256')).privateKey;
const token = await new jose.SignJWT({ common_name: 'npm-jose.access', type: 'app', sub: '' })
  .setProtectedHeader({ alg: 'RS256', kid, typ: 'JWT' })
  .setIssuer(iss).setAudience([aud]).setIssuedAt().setNotBefore('0s').setExpirationTime('10m')
  .sign(key);
process.stdout.write(token);
`
	cmd := exec.Command("node", "--input-type=module", "-e", script, keyFile, kid, issuer, cfAUD)
	cmd.Dir = npmDir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// required skips locally, fails in CI, when a test's tool is missing.
func required(t *testing.T, msg string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}
