package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/clearance/clearance/internal/oktasim"
	"github.com/clearance/clearance/internal/testkit/testpg"
	"github.com/clearance/clearance/pkg/presence"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
)

// Attacks on the start of a sign-in bound by the agent's proof, where one
// write spends the AuthnRequest's ID and stores the sign-in's challenge:
// one signed request, sent many times at once, to one verifier or to two
// replicas, over both bindings, from one browser or many, must yield one
// challenge and one response; a write that failed must leave the ID
// unspent and nothing stored; and no log line may carry a challenge, a
// browser's cookie, the request or a response.

const signInCookie = "__Host-clearance-signin"

// startAttempt is one browser's try at starting the sign-in.
type startAttempt struct {
	status  int
	body    string
	loc     string
	cookies []string
	cookie  string // the sign-in cookie the browser holds afterwards
	err     error
	i       int // which of the racers
}

// sendStart sends the sign-in request as a browser that holds cookie (none
// when empty), by the Redirect binding (u) or, when form is set, the POST
// binding. It reports failures instead of ending the test: it runs on
// goroutines of its own.
func sendStart(b *ssoBrowser, u string, form url.Values, cookie string) startAttempt {
	var req *http.Request
	var err error
	if form != nil {
		req, err = http.NewRequest(http.MethodPost, b.base()+"/saml/sso", strings.NewReader(form.Encode()))
		if req != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
	} else {
		req, err = http.NewRequest(http.MethodGet, b.base()+strings.TrimPrefix(u, e2eSSOPublic), nil)
	}
	if err != nil {
		return startAttempt{err: err}
	}
	if cookie != "" {
		req.Header.Set("Cookie", signInCookie+"="+cookie)
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return startAttempt{err: err}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	a := startAttempt{status: resp.StatusCode, body: string(body), loc: resp.Header.Get("Location"), cookies: resp.Header.Values("Set-Cookie"), cookie: cookie}
	for _, c := range resp.Cookies() {
		if c.Name == signInCookie {
			a.cookie = c.Value
		}
	}
	return a
}

// randomCookie is a sign-in cookie a browser could hold.
func randomCookie() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// race sends the same sign-in from racers browsers at once: every third by
// the POST binding, every other one with the same cookie (one browser in
// several tabs), the rest each a browser of its own without a cookie. to
// picks the replica each goes to.
func raceStarts(t *testing.T, racers int, to func(i int) *ssoBrowser, u string, form url.Values) []startAttempt {
	t.Helper()
	shared := randomCookie()
	out := make([]startAttempt, racers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var f url.Values
			if i%3 == 2 {
				f = form
			}
			cookie := ""
			if i%2 == 1 {
				cookie = shared
			}
			<-start
			out[i] = sendStart(to(i), u, f, cookie)
			out[i].i = i
		}()
	}
	close(start)
	wg.Wait()
	return out
}

// oneWinner checks that exactly one attempt was sent on to the agent and
// every other was refused as a replay, with no cookie and no redirect; it
// returns the winner.
func oneWinner(t *testing.T, attempts []startAttempt) startAttempt {
	t.Helper()
	var winners []startAttempt
	for i, a := range attempts {
		switch {
		case a.err != nil:
			t.Errorf("attempt %d: %v", i, a.err)
		case a.status == http.StatusSeeOther:
			winners = append(winners, a)
		case a.status != http.StatusBadRequest || !strings.Contains(a.body, "replayed_request"):
			t.Errorf("attempt %d: %d, want 303 once and 400 replayed_request otherwise:\n%.400s", i, a.status, a.body)
		case a.loc != "" || len(a.cookies) != 0:
			t.Errorf("attempt %d refused as a replay, yet Location %q, Set-Cookie %q", i, a.loc, a.cookies)
		}
	}
	if len(winners) != 1 {
		t.Fatalf("%d of %d attempts at one request were sent to the agent, want exactly 1", len(winners), len(attempts))
	}
	return winners[0]
}

// challengeOf reads the challenge from a redirect to the agent.
func challengeOf(t *testing.T, loc string) string {
	t.Helper()
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	c, ret, err := presence.ParseAgentQuery(u.RawQuery)
	if err != nil || ret != e2eSSOPublic+"/saml/presence" {
		t.Fatalf("agent URL %q: return %q, %v", loc, ret, err)
	}
	return c
}

// present brings the agent's signed proof of challenge for deviceID back
// to b, as the browser holding cookie.
func present(t *testing.T, b *ssoBrowser, agent *replicaAgent, challenge, cookie string) ssoPage {
	t.Helper()
	origin, _ := presence.OriginOf(e2eSSOPublic + "/saml/presence")
	stmt, sig, err := presence.Sign(agent.a.Key, presence.Statement{Challenge: challenge, DeviceID: agent.a.DeviceID, Origin: origin, Time: time.Now().UTC().Truncate(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodGet, b.base()+"/saml/presence?"+presence.RedirectQuery(stmt, sig), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cookie != "" {
		req.Header.Set("Cookie", signInCookie+"="+cookie)
	}
	return b.do(req)
}

// storedStart is what the store holds for one started sign-in.
type storedStart struct {
	requestIDs, challenges int
	challengeHash          []byte
	browserHash            []byte
}

func sum(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:] }

// checkStored checks that the store holds the winner's challenge, bound to
// its browser, and nothing else for the request.
func checkStored(t *testing.T, got storedStart, winner startAttempt, challenge string) {
	t.Helper()
	if got.requestIDs != 1 || got.challenges != 1 {
		t.Errorf("stored %d request IDs and %d challenges for one request, want 1 and 1", got.requestIDs, got.challenges)
	}
	if !bytes.Equal(got.challengeHash, sum(challenge)) || !bytes.Equal(got.browserHash, sum(winner.cookie)) {
		t.Error("the stored challenge is not the one the winner was sent to the agent with, for the winner's cookie")
	}
}

// noSecretsLogged checks that none of the sign-in's secrets, nor its
// request or response, reach a log.
func noSecretsLogged(t *testing.T, logs map[string]string, secrets map[string]string) {
	t.Helper()
	for name, log := range logs {
		for what, s := range secrets {
			if s != "" && strings.Contains(log, s) {
				t.Errorf("%s's log holds the %s", name, what)
			}
		}
		for _, s := range []string{"SAMLResponse", "SAMLRequest=", "<samlp:"} {
			if strings.Contains(log, s) {
				t.Errorf("%s's log holds %q", name, s)
			}
		}
	}
}

// signedOrg returns Okta's request-signing certificate file and an Okta
// org that signs every request with it, for the verifier in dataDir.
func signedOrg(t *testing.T, dir string) (certFile string, org func(dataDir string) (*oktasim.SP, []byte)) {
	t.Helper()
	key, cert, certFile := oktaSigner(t, dir)
	return certFile, func(dataDir string) (*oktasim.SP, []byte) { return oktaOrg(t, dataDir, key, cert) }
}

// TestAttackStartRaceOneVerifier: one signed request sent by 24 browsers
// at once (both bindings, shared and separate cookies) to one verifier
// (SQLite, group commit): one is sent to the agent, the rest are refused as
// replays with no cookie; the store holds one request ID and the winner's
// challenge, bound to the winner's cookie; the winner's proof completes the
// sign-in once, and nothing else the losers hold does.
func TestAttackStartRaceOneVerifier(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "verifier")
	certFile, org := signedOrg(t, dir)
	ssoAddr := freePort(t)
	v := startSSOVerifier(t, dataDir, ssoAddr, "--okta-request-cert", certFile, "--sso-rate-limit", "0")
	sp, idpCertPEM := org(dataDir)
	agent := streamToA(t, v, v, v, v.enrollSecret(), "5A1C0A7E-0000-4000-8000-0000000A7AC1")

	r := sp.NewRequest(e2eUser)
	u, err := sp.RedirectURL(r)
	if err != nil {
		t.Fatal(err)
	}
	form, err := sp.PostForm(r)
	if err != nil {
		t.Fatal(err)
	}
	b := newSSOBrowser(t, v, ssoAddr, tls.Certificate{})
	const racers = 24
	winner := oneWinner(t, raceStarts(t, racers, func(int) *ssoBrowser { return b }, u, form))
	challenge := challengeOf(t, winner.loc)

	db := openSQLite(t, dataDir)
	var got storedStart
	if err := db.QueryRow(`SELECT count(*) FROM saml_request_ids WHERE id = '` + r.ID + `'`).Scan(&got.requestIDs); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(`SELECT count(*), max(challenge_hash), max(browser_hash) FROM sign_in_challenges`).Scan(&got.challenges, &got.challengeHash, &got.browserHash); err != nil {
		t.Fatal(err)
	}
	checkStored(t, got, winner, challenge)

	// A loser's cookie with the winner's proof is refused (and, by design,
	// spends the challenge: see threat-model.md); so the winner goes
	// first here, then a loser, then the winner again.
	okAtOkta(t, sp, idpCertPEM, present(t, b, agent, challenge, winner.cookie), r.ID, r.RelayState)
	if p := present(t, b, agent, challenge, randomCookie()); p.status != http.StatusBadRequest || !strings.Contains(p.body, "presence_replayed") {
		t.Errorf("the proof again from another browser: %d, want 400 presence_replayed:\n%.400s", p.status, p.body)
	}
	if p := present(t, b, agent, challenge, winner.cookie); p.status != http.StatusBadRequest || !strings.Contains(p.body, "presence_replayed") {
		t.Errorf("the proof again from the winner: %d, want 400 presence_replayed:\n%.400s", p.status, p.body)
	}
	// After completion, the request is still a replay on both bindings.
	for _, f := range []url.Values{nil, form} {
		if a := sendStart(b, u, f, winner.cookie); a.status != http.StatusBadRequest || !strings.Contains(a.body, "replayed_request") || a.loc != "" {
			t.Errorf("the request after its sign-in (POST %v): %d %q", f != nil, a.status, a.loc)
		}
	}
	if ds := decisionsFor(t, v, agent.a.DeviceID, r.ID); ds != 1 {
		t.Errorf("%d decisions for request %s, want 1", ds, r.ID)
	}
	if n := v.metric(t, `clearance_sso_requests_refused_total{reason="replayed_request"}`); n != racers-1+2 {
		t.Errorf("replayed_request refusals counted %v, want %d", n, racers-1+2)
	}
	noSecretsLogged(t, map[string]string{"the verifier": v.logs.String()}, map[string]string{
		"challenge": challenge, "winner's cookie": winner.cookie, "relay state": r.RelayState,
	})
}

// decisionsFor counts the decisions logged for requestID.
func decisionsFor(t *testing.T, v *verifier, deviceID, requestID string) int {
	t.Helper()
	admin, ctx := v.admin()
	list, err := admin.ListDecisions(ctx, &adminv1.ListDecisionsRequest{DeviceId: deviceID})
	if err != nil {
		t.Fatalf("ListDecisions: %v", err)
	}
	n := 0
	for _, d := range list.GetDecisions() {
		if d.GetRequestId() == requestID {
			n++
		}
	}
	return n
}

// TestAttackStartRaceReplicas: the same race split across two replicas on
// one PostgreSQL database: one start wins across both, the store holds one
// request ID and one challenge, the winner's proof completes at the other
// replica, once.
func TestAttackStartRaceReplicas(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dsn, _ := testpg.NewDatabaseWithPassword(t)
	certFile, org := signedOrg(t, dir)
	vA, vB, ssoA, ssoB := startReplicas(t, filepath.Join(dir, "replicas"), "--database", dsn, "--okta-request-cert", certFile, "--sso-rate-limit", "0")
	secret := lastLine(cli(t, "secret", "create", "--database", dsn, "--description", "attack"))
	agent := streamToA(t, vA, vA, vB, secret, "5A1C0A7E-0000-4000-8000-0000000A7AC2")
	sp, idpCertPEM := org(vA.dataDir)

	pg, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Close(context.Background()) })
	atA := newSSOBrowser(t, vA, ssoA, tls.Certificate{})
	atB := newSSOBrowser(t, vB, ssoB, tls.Certificate{})
	for round := range 3 {
		r := sp.NewRequest(e2eUser)
		u, err := sp.RedirectURL(r)
		if err != nil {
			t.Fatal(err)
		}
		form, err := sp.PostForm(r)
		if err != nil {
			t.Fatal(err)
		}
		winner := oneWinner(t, raceStarts(t, 24, func(i int) *ssoBrowser {
			if (i+round)%2 == 0 {
				return atA
			}
			return atB
		}, u, form))
		challenge := challengeOf(t, winner.loc)
		var got storedStart
		ctx := context.Background()
		if err := pg.QueryRow(ctx, `SELECT count(*) FROM saml_request_ids WHERE id = $1`, r.ID).Scan(&got.requestIDs); err != nil {
			t.Fatal(err)
		}
		if err := pg.QueryRow(ctx, `SELECT count(*) FROM sign_in_challenges WHERE challenge_hash = $1`, sum(challenge)).Scan(&got.challenges); err != nil {
			t.Fatal(err)
		}
		if err := pg.QueryRow(ctx, `SELECT browser_hash FROM sign_in_challenges WHERE challenge_hash = $1`, sum(challenge)).Scan(&got.browserHash); err != nil {
			t.Fatal(err)
		}
		got.challengeHash = sum(challenge)
		checkStored(t, got, winner, challenge)
		var all int
		if err := pg.QueryRow(ctx, `SELECT count(*) FROM sign_in_challenges`).Scan(&all); err != nil || all != round+1 {
			t.Errorf("round %d: %d challenges stored in all, want %d (%v)", round, all, round+1, err)
		}
		// Completed at the replica the winner did not start at.
		other := atA
		if (winner.i+round)%2 == 0 {
			other = atB
		}
		okAtOkta(t, sp, idpCertPEM, present(t, other, agent, challenge, winner.cookie), r.ID, r.RelayState)
		for _, b := range []*ssoBrowser{atA, atB} {
			if p := present(t, b, agent, challenge, winner.cookie); p.status != http.StatusBadRequest || !strings.Contains(p.body, "presence_replayed") {
				t.Errorf("round %d: the proof again: %d\n%.300s", round, p.status, p.body)
			}
		}
		if n := decisionsFor(t, vA, agent.a.DeviceID, r.ID); n != 1 {
			t.Errorf("round %d: %d decisions for one request, want 1", round, n)
		}
		noSecretsLogged(t, map[string]string{"A": vA.logs.String(), "B": vB.logs.String()}, map[string]string{
			"challenge": challenge, "winner's cookie": winner.cookie, "relay state": r.RelayState,
		})
	}
}

// TestAttackStartAfterDiskFull: with the disk full, a signed request fails
// closed (503 storage_unavailable, no cookie, no redirect) and leaves its ID
// unspent; the same request, sent again once space returns, starts the
// sign-in, which completes once; the request is then a replay. The log
// says which write failed and holds no secret.
func TestAttackStartAfterDiskFull(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "verifier")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	certFile, org := signedOrg(t, dir)
	prefix, _ := smallDisk(t, dataDir, 32<<20) // as TestDiskFullRecovers'
	a := freeAddrs(t)
	v := startVerifierCmd(t, dataDir, a, prefix, "--okta-request-cert", certFile, "--sso-rate-limit", "0")
	sp, idpCertPEM := org(v.dataDir)
	admin, ctx := v.admin()
	sec, err := admin.CreateEnrollSecret(ctx, &adminv1.CreateEnrollSecretRequest{Description: "attack"})
	if err != nil {
		t.Fatal(err)
	}
	agent := streamToA(t, v, v, v, sec.GetSecret(), "5A1C0A7E-0000-4000-8000-0000000A7AC3")
	b := newSSOBrowser(t, v, a.sso, tls.Certificate{})

	r := sp.NewRequest(e2eUser)
	u, err := sp.RedirectURL(r)
	if err != nil {
		t.Fatal(err)
	}
	filler, _ := fill(t, v.dataDir)
	cookie := randomCookie()
	// Several tries while full: none spends the ID.
	for i := range 3 {
		p := sendStart(b, u, nil, cookie)
		if p.status != http.StatusServiceUnavailable || !strings.Contains(p.body, "storage_unavailable") || p.loc != "" || len(p.cookies) != 0 {
			t.Fatalf("try %d while full: %d Location %q cookies %q, want 503 storage_unavailable and nothing else:\n%.400s", i, p.status, p.loc, p.cookies, p.body)
		}
	}
	replicaLog(t, v.logs, "the failed start", "sso_unavailable", "step=\"recording request ID and sign-in challenge\"")
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	completesOnceRecovered(t, v, b, agent, sp, idpCertPEM, r, u, cookie, 15*time.Second)
	t.Logf("the failed start's log line: %s", lineWith(v.logs.String(), "sso_unavailable"))
}

// lineWith is the first log line holding s.
func lineWith(log, s string) string {
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}

// TestAttackUnsignedStartsStore: with unsigned requests allowed and the
// agent's proof, each request anyone sends stores its request ID and a
// challenge holding its request and RelayState (threat-model.md, "Unsigned
// sign-ins, from every address together"): exactly one of each, kept 2 minutes (the
// challenge) and 2×max-request-skew + 1 minute (the ID). A replayed
// unsigned ID stores nothing more. This pins the bound.
func TestAttackUnsignedStartsStore(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(t.TempDir(), "verifier")
	ssoAddr := freePort(t)
	// Neither limit: what is measured is what each start stores (the
	// bound on them all is TestHostile's).
	v := startSSOVerifier(t, dataDir, ssoAddr, "--sso-rate-limit", "0", "--sso-unsigned-rate-limit", "0")
	sp, _ := oktaOrg(t, dataDir, nil, nil)
	b := newSSOBrowser(t, v, ssoAddr, tls.Certificate{})
	db := openSQLite(t, dataDir)
	size := func() int64 {
		var n int64
		for _, f := range []string{"clearance.db", "clearance.db-wal"} {
			if st, err := os.Stat(filepath.Join(dataDir, f)); err == nil {
				n += st.Size()
			}
		}
		return n
	}
	count := func(table string) int {
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM ` + table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before, beforeIDs, beforeCh := size(), count("saml_request_ids"), count("sign_in_challenges")
	const n = 200
	var last oktasim.Request
	for i := range n {
		r := sp.NewRequest(fmt.Sprintf("user%d@example.com", i))
		r.RelayState = strings.Repeat("R", 4096)
		last = r
		u, err := sp.RedirectURL(r)
		if err != nil {
			t.Fatal(err)
		}
		if p := sendStart(b, u, nil, ""); p.status != http.StatusSeeOther {
			t.Fatalf("unsigned start %d: %d", i, p.status)
		}
	}
	ids, chs := count("saml_request_ids")-beforeIDs, count("sign_in_challenges")-beforeCh
	if ids != n || chs != n {
		t.Errorf("%d unsigned starts stored %d request IDs and %d challenges, want %d of each", n, ids, chs, n)
	}
	u, _ := sp.RedirectURL(last)
	for range 20 {
		if p := sendStart(b, u, nil, ""); p.status != http.StatusBadRequest {
			t.Fatalf("an unsigned replay: %d", p.status)
		}
	}
	if c := count("sign_in_challenges") - beforeCh; c != n {
		t.Errorf("unsigned replays stored %d more challenges", c-n)
	}
	var chTTL, idTTL int64
	if err := db.QueryRow(`SELECT max(expires_at - created_at) FROM sign_in_challenges`).Scan(&chTTL); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(`SELECT max(expires_at) FROM saml_request_ids`).Scan(&idTTL); err != nil {
		t.Fatal(err)
	}
	idLeft := time.Until(time.Unix(0, idTTL))
	if time.Duration(chTTL) != 2*time.Minute || idLeft > 7*time.Minute || idLeft < 6*time.Minute {
		t.Errorf("challenges kept %v, request IDs %v more; want 2m and about 7m", time.Duration(chTTL), idLeft)
	}
	t.Logf("%d unsigned starts with 4 KiB RelayState: +%d bytes of database and WAL (%d a start); challenges kept %v, request IDs about %v",
		n, size()-before, (size()-before)/n, time.Duration(chTTL), idLeft.Round(time.Second))
}

// abortedStart sends the sign-in request u over a connection of its own
// and closes it, with a reset, as soon as the request is written: the
// browser gave up (or an attacker did) while the verifier was starting the
// sign-in.
func abortedStart(t *testing.T, v *verifier, ssoAddr, u string) {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(v.rootPEM())
	host, _ := url.Parse(e2eSSOPublic)
	c, err := tls.Dial("tcp", ssoAddr, &tls.Config{RootCAs: roots, ServerName: host.Hostname()})
	if err != nil {
		t.Fatal(err)
	}
	path := strings.TrimPrefix(u, e2eSSOPublic)
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, host.Hostname()); err != nil {
		t.Fatal(err)
	}
	if tc, ok := c.NetConn().(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
}

// TestAttackAbortedStartsAreNotStorageFailures: a client that sends a
// sign-in request and hangs up at once did nothing to the store. Its
// request must not be counted, logged at error, or paged as the store
// being unavailable: operators alert on storage_unavailable, and anyone
// can send requests and hang up — unsigned ones where they are allowed, or,
// where Okta signs, replays of one signed request (a URL in any browser's
// history, good for max-request-skew), with the default rate limit.
// They are counted as client_gone instead.
func TestAttackAbortedStartsAreNotStorageFailures(t *testing.T) {
	t.Parallel()
	for _, signed := range []bool{false, true} {
		name := "unsigned"
		if signed {
			name = "signed replays"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			dataDir := filepath.Join(dir, "verifier")
			ssoAddr := freePort(t)
			var v *verifier
			var sp *oktasim.SP
			if signed {
				certFile, org := signedOrg(t, dir)
				v = startSSOVerifier(t, dataDir, ssoAddr, "--okta-request-cert", certFile)
				sp, _ = org(dataDir)
			} else {
				v = startSSOVerifier(t, dataDir, ssoAddr)
				sp, _ = oktaOrg(t, dataDir, nil, nil)
			}
			captured, err := sp.RedirectURL(sp.NewRequest(e2eUser))
			if err != nil {
				t.Fatal(err)
			}
			// The default rate limit lets one address send 100 at once.
			const n = 100
			for i := range n {
				u := captured
				if !signed {
					if u, err = sp.RedirectURL(sp.NewRequest(fmt.Sprintf("user%d@example.com", i))); err != nil {
						t.Fatal(err)
					}
				}
				abortedStart(t, v, ssoAddr, u)
			}
			time.Sleep(2 * time.Second) // the handlers finish
			got := v.metric(t, `clearance_sso_requests_refused_total{reason="storage_unavailable"}`)
			lines := strings.Count(v.logs.String(), "msg=sso_unavailable")
			if got != 0 || lines != 0 {
				t.Errorf("%d requests whose client hung up: storage_unavailable counted %v times, %d sso_unavailable lines at error; first: %s",
					n, got, lines, lineWith(v.logs.String(), "sso_unavailable"))
			}
		})
	}
}

// TestAttackReplayAfterSkewRaised: a verifier with a larger
// max-request-skew (the same one restarted with it, or another replica
// while a change rolls out) accepts a signed request's IssueInstant for
// longer than the verifier that answered it would have. The request's ID
// must be remembered at least that long: until its IssueInstant plus the
// largest skew any verifier may be set to, not 2×10 s + 1 minute after it
// was answered, when the sweep would forget it and the request could
// start a second sign-in and get a second response.
func TestAttackReplayAfterSkewRaised(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "verifier")
	certFile, org := signedOrg(t, dir)
	a := freeAddrs(t)
	v := startVerifierCmd(t, dataDir, a, nil, "--okta-request-cert", certFile, "--max-request-skew", "10s")
	sp, idpCertPEM := org(dataDir)
	agent := streamToA(t, v, v, v, v.enrollSecret(), "5A1C0A7E-0000-4000-8000-0000000A7AC4")
	b := newSSOBrowser(t, v, a.sso, tls.Certificate{})
	r := sp.NewRequest(e2eUser)
	u, err := sp.RedirectURL(r)
	if err != nil {
		t.Fatal(err)
	}
	first := sendStart(b, u, nil, randomCookie())
	if first.status != http.StatusSeeOther {
		t.Fatalf("first start: %d", first.status)
	}
	okAtOkta(t, sp, idpCertPEM, present(t, b, agent, challengeOf(t, first.loc), first.cookie), r.ID, r.RelayState)

	v.stop()
	v = startVerifierCmd(t, dataDir, a, nil, "--okta-request-cert", certFile, "--max-request-skew", "30m")
	agent.connect(v.grpcAddr)
	db := openSQLite(t, dataDir)
	var expires int64
	if err := db.QueryRow(`SELECT expires_at FROM saml_request_ids WHERE id = ?`, r.ID).Scan(&expires); err != nil {
		t.Fatalf("the answered request's ID is not on record: %v", err)
	}
	// 30m is the largest max-request-skew the verifier accepts.
	if until := time.Unix(0, expires); until.Before(r.IssueInstant.Add(30 * time.Minute)) {
		t.Errorf("request %s is remembered until %s, %s after it was issued: a verifier set to accept it for 30m would answer it again once it is swept",
			r.ID, until.UTC().Format(time.RFC3339), until.Sub(r.IssueInstant).Round(time.Second))
	}
	again := sendStart(b, u, nil, randomCookie())
	if again.status != http.StatusBadRequest {
		t.Errorf("the replay after the restart got %d, want 400 (replayed_request)", again.status)
	}
}

// TestAttackStartWhilePostgresReadOnly: the store refuses writes (a
// primary gone read-only, as in a failover): a signed request fails
// closed, spends nothing and stores nothing; once writes return, the same
// request starts the sign-in, which completes once.
func TestAttackStartWhilePostgresReadOnly(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dsn, _ := testpg.NewDatabaseWithPassword(t)
	certFile, org := signedOrg(t, dir)
	dataDir := filepath.Join(dir, "verifier")
	ssoAddr := freePort(t)
	v := startSSOVerifier(t, dataDir, ssoAddr, "--database", dsn, "--okta-request-cert", certFile, "--sso-rate-limit", "0")
	sp, idpCertPEM := org(dataDir)
	secret := lastLine(cli(t, "secret", "create", "--database", dsn, "--description", "attack"))
	agent := streamToA(t, v, v, v, secret, "5A1C0A7E-0000-4000-8000-0000000A7AC5")
	b := newSSOBrowser(t, v, ssoAddr, tls.Certificate{})
	ctx := context.Background()
	pg, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Close(ctx) })
	readOnly := func(on bool) {
		t.Helper()
		if _, err := pg.Exec(ctx, fmt.Sprintf(`ALTER DATABASE %s SET default_transaction_read_only = %v`, pgx.Identifier{pg.Config().Database}.Sanitize(), on)); err != nil {
			t.Fatal(err)
		}
		// The verifier's connections take the setting when they reconnect.
		if _, err := pg.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`); err != nil {
			t.Fatal(err)
		}
	}
	count := func(q string, args ...any) int {
		var n int
		if err := pg.QueryRow(ctx, q, args...).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	r := sp.NewRequest(e2eUser)
	u, err := sp.RedirectURL(r)
	if err != nil {
		t.Fatal(err)
	}
	cookie := randomCookie()
	readOnly(true)
	before := count(`SELECT count(*) FROM sign_in_challenges`)
	for i := range 3 {
		p := sendStart(b, u, nil, cookie)
		if p.status != http.StatusServiceUnavailable || !strings.Contains(p.body, "storage_unavailable") || p.loc != "" || len(p.cookies) != 0 {
			t.Fatalf("try %d while read-only: %d Location %q cookies %q:\n%.400s", i, p.status, p.loc, p.cookies, p.body)
		}
	}
	if n, c := count(`SELECT count(*) FROM saml_request_ids WHERE id = $1`, r.ID), count(`SELECT count(*) FROM sign_in_challenges`); n != 0 || c != before {
		t.Errorf("failed starts stored %d request IDs and %d challenges", n, c-before)
	}
	t.Logf("the failed start's log line: %s", lineWith(v.logs.String(), "sso_unavailable"))
	readOnly(false)
	completesOnceRecovered(t, v, b, agent, sp, idpCertPEM, r, u, cookie, 20*time.Second)
}

// completesOnceRecovered: once the store takes writes again (within
// within), the request (at URL u, with the browser's cookie) that failed
// closed starts the sign-in, its ID unspent by the failed writes; it
// completes at Okta; sent again it is a replay; and no log shows the
// challenge, the cookie or the RelayState.
func completesOnceRecovered(t *testing.T, v *verifier, b *ssoBrowser, agent *replicaAgent, sp *oktasim.SP, idpCertPEM []byte, r oktasim.Request, u, cookie string, within time.Duration) {
	t.Helper()
	var p startAttempt
	waitUntil(t, "the same request to start the sign-in once the store takes writes", within, func() bool {
		p = sendStart(b, u, nil, cookie)
		return p.status != http.StatusServiceUnavailable
	})
	if p.status != http.StatusSeeOther {
		t.Fatalf("the request after recovery: %d, want 303 to the agent (its ID unspent by the failed writes):\n%.400s", p.status, p.body)
	}
	challenge := challengeOf(t, p.loc)
	okAtOkta(t, sp, idpCertPEM, present(t, b, agent, challenge, cookie), r.ID, r.RelayState)
	if a := sendStart(b, u, nil, cookie); a.status != http.StatusBadRequest || !strings.Contains(a.body, "replayed_request") {
		t.Errorf("the request after its sign-in: %d, want 400 replayed_request", a.status)
	}
	noSecretsLogged(t, map[string]string{"the verifier": v.logs.String()}, map[string]string{
		"challenge": challenge, "cookie": cookie, "relay state": r.RelayState,
	})
}
