package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clearance/clearance/internal/testkit/testpg"
)

// oktaSCIM plays Okta's provisioning client, request for request as Okta's
// SCIM 2.0 guide shows them: its headers, its bodies, its order.
type oktaSCIM struct {
	t      *testing.T
	client *http.Client
	base   string // https://sso.clearance.test/scim/v2
	token  string
}

func newOktaSCIM(t *testing.T, v *verifier, ssoAddr, token string) *oktaSCIM {
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(v.rootPEM())
	pub, _ := url.Parse(e2eSSOPublic)
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: pub.Hostname()},
		// Okta reaches the public name; here that is the loopback listener.
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, ssoAddr)
		},
	}
	return &oktaSCIM{t: t, client: &http.Client{Transport: tr, Timeout: 20 * time.Second}, base: e2eSSOPublic + "/scim/v2", token: token}
}

type scimReply struct {
	status int
	body   map[string]any
	raw    string
}

func (o *oktaSCIM) do(method, path, body string) scimReply {
	o.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, o.base+path, rd)
	if err != nil {
		o.t.Fatal(err)
	}
	req.Header.Set("User-Agent", "Okta SCIM Client 1.0.0")
	req.Header.Set("Accept", "application/scim+json")
	req.Header.Set("Accept-Charset", "utf-8")
	if o.token != "" {
		req.Header.Set("Authorization", "Bearer "+o.token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/scim+json; charset=utf-8")
	}
	resp, err := o.client.Do(req)
	if err != nil {
		o.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	r := scimReply{status: resp.StatusCode, raw: string(data)}
	if len(data) > 0 {
		dec := json.NewDecoder(bytes.NewReader(data))
		if err := dec.Decode(&r.body); err != nil {
			o.t.Fatalf("%s %s: body is not JSON: %q", method, path, data)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/scim+json") {
			o.t.Errorf("%s %s: Content-Type %q", method, path, ct)
		}
	}
	return r
}

func (o *oktaSCIM) want(r scimReply, status int, what string) scimReply {
	o.t.Helper()
	if r.status != status {
		o.t.Fatalf("%s: status %d, want %d: %s", what, r.status, status, r.raw)
	}
	return r
}

// oktaUserBody is the body of Okta's "Create Users" request.
func oktaUserBody(userName, given, family, externalID string) string {
	return fmt.Sprintf(`{
  "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
  "userName": %q,
  "name": {"givenName": %q, "familyName": %q},
  "emails": [{"primary": true, "value": %q, "type": "work"}],
  "displayName": "%s %s",
  "locale": "en-US",
  "externalId": %q,
  "groups": [],
  "password": "1mz050nq",
  "active": true
}`, userName, given, family, userName, given, family, externalID)
}

// provision runs Okta's "Create Users" sequence: look the userName up,
// then create when absent. It returns the server's id.
func (o *oktaSCIM) provision(userName, given, family string) string {
	o.t.Helper()
	q := url.Values{"filter": {fmt.Sprintf("userName eq %q", userName)}, "startIndex": {"1"}, "count": {"100"}}
	r := o.want(o.do("GET", "/Users?"+q.Encode(), ""), 200, "look up "+userName)
	if r.body["totalResults"] != 0.0 || len(r.body["Resources"].([]any)) != 0 {
		o.t.Fatalf("look up %s before creating: %s", userName, r.raw)
	}
	r = o.want(o.do("POST", "/Users", oktaUserBody(userName, given, family, "00u"+given)), 201, "create "+userName)
	id, _ := r.body["id"].(string)
	if id == "" || r.body["userName"] != userName || r.body["active"] != true {
		o.t.Fatalf("create %s: %s", userName, r.raw)
	}
	return id
}

const patchOp = `{"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [%s]}`

// TestSCIMOktaSequences: Okta's provisioning, word for word, against the
// real binary, on SQLite and PostgreSQL.
func TestSCIMOktaSequences(t *testing.T) {
	t.Parallel()
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			// Okta's provisioning bursts past a per-address limit made for
			// browsers: its egress addresses are exempted, as docs/okta.md says.
			extra := []string{"--sso-rate-exempt", "127.0.0.1"}
			if backend == "postgres" {
				dsn, _ := testpg.NewDatabaseWithPassword(t)
				extra = append(extra, "--database", dsn)
			}
			dataDir := filepath.Join(t.TempDir(), "verifier")
			ssoAddr := freePort(t)
			v := startSSOVerifier(t, dataDir, ssoAddr, extra...)
			token := lastLine(cli(t, "scim", "token", "create", "--data-dir", dataDir, "--description", "Okta"))
			okta := newOktaSCIM(t, v, ssoAddr, token)

			// Without the token, or with another, nothing is served.
			for _, tok := range []string{"", "scim_0123456789abcdef.forged"} {
				bad := *okta
				bad.token = tok
				r := bad.want(bad.do("GET", "/Users?startIndex=1&count=1", ""), 401, "no token")
				if r.body["status"] != "401" || r.body["detail"] == "" {
					t.Errorf("401 body: %s", r.raw)
				}
			}

			// 1. "Test Connector Configuration".
			okta.want(okta.do("GET", "/Users?startIndex=1&count=1", ""), 200, "test connection")
			okta.want(okta.do("GET", "/Groups?startIndex=1&count=100", ""), 200, "test connection, groups")

			// 2. Create: filter first, then POST; a second create is a 409.
			ada := okta.provision("ada.lovelace@example.com", "Ada", "Lovelace")
			r := okta.want(okta.do("POST", "/Users", oktaUserBody("Ada.Lovelace@example.com", "Ada", "L", "00uX")), 409, "duplicate")
			if r.body["scimType"] != "uniqueness" {
				t.Errorf("duplicate: %s", r.raw)
			}
			q := url.Values{"filter": {`userName eq "ADA.LOVELACE@example.com"`}, "startIndex": {"1"}, "count": {"100"}}
			r = okta.want(okta.do("GET", "/Users?"+q.Encode(), ""), 200, "look up again")
			if r.body["totalResults"] != 1.0 || r.body["Resources"].([]any)[0].(map[string]any)["id"] != ada {
				t.Fatalf("the lookup does not find the user regardless of case: %s", r.raw)
			}

			// 3. Update: GET, then PUT the whole user.
			r = okta.want(okta.do("GET", "/Users/"+ada, ""), 200, "get user")
			put := r.body
			put["name"] = map[string]any{"givenName": "Augusta Ada", "familyName": "King"}
			body, _ := json.Marshal(put)
			r = okta.want(okta.do("PUT", "/Users/"+ada, string(body)), 200, "put user")
			if r.body["name"].(map[string]any)["familyName"] != "King" || r.body["id"] != ada {
				t.Fatalf("put: %s", r.raw)
			}

			// 4. Deactivate, reactivate.
			r = okta.want(okta.do("PATCH", "/Users/"+ada, fmt.Sprintf(patchOp, `{"op": "replace", "value": {"active": false}}`)), 200, "deactivate")
			if r.body["active"] != false {
				t.Fatalf("deactivate: %s", r.raw)
			}
			if r = okta.want(okta.do("GET", "/Users/"+ada, ""), 200, "get"); r.body["active"] != false {
				t.Fatalf("after deactivation: %s", r.raw)
			}
			r = okta.want(okta.do("PATCH", "/Users/"+ada, fmt.Sprintf(patchOp, `{"op": "replace", "value": {"active": true}}`)), 200, "reactivate")
			if r.body["active"] != true {
				t.Fatalf("reactivate: %s", r.raw)
			}

			// 5. Import: paged GETs until every user is read, each once.
			ids := map[string]bool{ada: true}
			for i := range 104 {
				ids[okta.provision(fmt.Sprintf("user%03d@example.com", i), fmt.Sprintf("U%03d", i), "Example")] = true
			}
			seen := map[string]bool{}
			for start := 1; ; start += 100 {
				r := okta.want(okta.do("GET", fmt.Sprintf("/Users?startIndex=%d&count=100", start), ""), 200, "import page")
				if r.body["totalResults"] != 105.0 || r.body["startIndex"] != float64(start) {
					t.Fatalf("import page at %d: totalResults %v startIndex %v", start, r.body["totalResults"], r.body["startIndex"])
				}
				res := r.body["Resources"].([]any)
				if r.body["itemsPerPage"] != float64(len(res)) {
					t.Fatalf("itemsPerPage %v for %d resources", r.body["itemsPerPage"], len(res))
				}
				for _, x := range res {
					id := x.(map[string]any)["id"].(string)
					if seen[id] {
						t.Fatalf("import saw %s twice", id)
					}
					seen[id] = true
				}
				if start+100 > 105 {
					break
				}
			}
			if len(seen) != len(ids) {
				t.Fatalf("import saw %d users, want %d", len(seen), len(ids))
			}

			// 6. Group Push: create, add members, remove one, rename, delete.
			bob := okta.provision("bob@example.com", "Bob", "Example")
			r = okta.want(okta.do("POST", "/Groups", `{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Test SCIMv2", "members": []}`), 201, "push group")
			gid, _ := r.body["id"].(string)
			if gid == "" || r.body["displayName"] != "Test SCIMv2" {
				t.Fatalf("push group: %s", r.raw)
			}
			okta.want(okta.do("PATCH", "/Groups/"+gid, fmt.Sprintf(patchOp, fmt.Sprintf(
				`{"op": "add", "path": "members", "value": [{"value": %q, "display": "ada.lovelace@example.com"}, {"value": %q, "display": "bob@example.com"}]}`, ada, bob))), 204, "add members")
			okta.want(okta.do("PATCH", "/Groups/"+gid, fmt.Sprintf(patchOp, fmt.Sprintf(
				`{"op": "remove", "path": "members[value eq \"%s\"]"}`, bob))), 204, "remove a member")
			okta.want(okta.do("PATCH", "/Groups/"+gid, fmt.Sprintf(patchOp, fmt.Sprintf(
				`{"op": "replace", "value": {"id": %q, "displayName": "Engineering"}}`, gid))), 204, "rename")
			r = okta.want(okta.do("GET", "/Groups/"+gid, ""), 200, "get group")
			ms, _ := r.body["members"].([]any)
			if r.body["displayName"] != "Engineering" || len(ms) != 1 || ms[0].(map[string]any)["value"] != ada {
				t.Fatalf("group after push: %s", r.raw)
			}
			okta.want(okta.do("DELETE", "/Groups/"+gid, ""), 204, "delete group")
			okta.want(okta.do("GET", "/Groups/"+gid, ""), 404, "get deleted group")

			// Rotation: a revoked token stops working at once.
			list := cli(t, "scim", "token", "list", "--data-dir", dataDir)
			id := strings.TrimPrefix(strings.SplitN(token, ".", 2)[0], "scim_")
			if !strings.Contains(list, id) || !strings.Contains(list, "active") {
				t.Fatalf("token list:\n%s", list)
			}
			cli(t, "scim", "token", "revoke", "--data-dir", dataDir, id)
			okta.want(okta.do("GET", "/Users/"+ada, ""), 401, "revoked token")
		})
	}
}
