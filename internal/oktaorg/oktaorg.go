// Package oktaorg is a fake Okta org for tests: an HTTPS server that serves
// the few management API reads the verifier makes (users, groups, group
// members, apps, System Log) the way Okta does — opaque `after` cursors in
// Link headers, X-Rate-Limit-* headers, Okta's error bodies — and an org
// authorization server token endpoint that checks private_key_jwt client
// assertions. Tests inject 429s and 5xx, take scopes away, and change users
// and groups while a client reads. Every request is validated against a
// pruned copy of Okta's published management OpenAPI description.
package oktaorg

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.step.sm/crypto/jose"
)

// Org is a fake Okta org. Its methods are safe for concurrent use.
type Org struct {
	Server *httptest.Server

	mu       sync.Mutex
	now      func() time.Time
	users    map[string]*User
	groups   map[string]*Group
	members  map[string]map[string]bool // group ID → user IDs
	logs     []Event                    // in persistence order
	tokens   map[string]Grant           // SSWS token → what its admin may read
	apps     map[string]*serviceApp     // client ID → app
	access   map[string]accessGrant     // access token → grant
	jtis     map[string]bool
	fail     []int // statuses the next API requests get, in order
	failSkip int   // requests answered normally before fail applies
	window   rateWindow
	requests []string // method + path of every API request
	invalid  []string // requests that did not validate against the OpenAPI description
	validate func(*http.Request) error
}

// User is a user as the org keeps it.
type User struct {
	ID          string
	Login       string
	Email       string
	FirstName   string
	LastName    string
	Status      string
	LastUpdated time.Time
}

// Group is a group as the org keeps it.
type Group struct {
	ID                    string
	Name                  string
	LastUpdated           time.Time
	LastMembershipUpdated time.Time
}

// Event is a System Log event as served (the JSON Okta sends).
type Event = map[string]any

// Grant is what a credential may read: a set of scopes (okta.users.read,
// ...), standing for the admin role's permissions.
type Grant map[string]bool

// Scopes returns a grant of scopes.
func Scopes(s ...string) Grant {
	g := Grant{}
	for _, x := range s {
		g[x] = true
	}
	return g
}

type serviceApp struct {
	key     *jose.JSONWebKey // public
	granted Grant            // scopes granted to the app (consent)
	role    Grant            // what its admin role allows
}

type accessGrant struct {
	scopes  Grant
	expires time.Time
}

type rateWindow struct {
	limit, used int
	reset       time.Time
}

// RateLimit is the requests each minute window allows.
const RateLimit = 600

// New starts an org on a TLS loopback server.
func New() *Org {
	o := &Org{
		now:     time.Now,
		users:   map[string]*User{},
		groups:  map[string]*Group{},
		members: map[string]map[string]bool{},
		tokens:  map[string]Grant{},
		apps:    map[string]*serviceApp{},
		access:  map[string]accessGrant{},
		jtis:    map[string]bool{},
	}
	v, err := newValidator()
	if err != nil {
		panic(err)
	}
	o.validate = v
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/users", o.api("okta.users.read", o.listUsers))
	mux.HandleFunc("GET /api/v1/groups", o.api("okta.groups.read", o.listGroups))
	mux.HandleFunc("GET /api/v1/groups/{id}/users", o.api("okta.groups.read", o.listMembers))
	mux.HandleFunc("GET /api/v1/apps", o.api("okta.apps.read", o.listApps))
	mux.HandleFunc("GET /api/v1/logs", o.api("okta.logs.read", o.listLogs))
	mux.HandleFunc("POST /oauth2/v1/token", o.token)
	o.Server = httptest.NewTLSServer(mux)
	return o
}

// Close stops the server.
func (o *Org) Close() { o.Server.Close() }

// URL is the org's base URL.
func (o *Org) URL() string { return o.Server.URL }

// TokenURL is the org authorization server's token endpoint.
func (o *Org) TokenURL() string { return o.Server.URL + "/oauth2/v1/token" }

// SetClock replaces the org's clock.
func (o *Org) SetClock(now func() time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.now = now
}

// AddToken makes token a valid SSWS API token that may read g.
func (o *Org) AddToken(token string, g Grant) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.tokens[token] = g
}

// AddServiceApp registers a service app with its public key, the scopes
// granted to it and what its admin role allows.
func (o *Org) AddServiceApp(clientID string, pub *jose.JSONWebKey, granted, role Grant) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.apps[clientID] = &serviceApp{key: pub, granted: granted, role: role}
}

// FailNext makes the next API requests answer with these statuses (429
// or 5xx), one each, in order.
func (o *Org) FailNext(statuses ...int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.fail = append(o.fail, statuses...)
}

// FailAfter lets n API requests through, then makes the next ones answer
// with these statuses: a failure in the middle of a long listing.
func (o *Org) FailAfter(n int, statuses ...int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.failSkip = n
	o.fail = append(o.fail, statuses...)
}

// Requests returns "METHOD /path" of every API request so far.
func (o *Org) Requests() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.requests)
}

// Invalid returns the requests that did not validate against Okta's
// OpenAPI description, with why.
func (o *Org) Invalid() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.invalid)
}

// PutUser adds or replaces a user, stamping LastUpdated.
func (o *Org) PutUser(u User) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if u.Status == "" {
		u.Status = "ACTIVE"
	}
	u.LastUpdated = o.tick()
	o.users[u.ID] = &u
}

// SetUserStatus changes a user's status (DEPROVISIONED: deactivated).
func (o *Org) SetUserStatus(id, status string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	u := o.users[id]
	u.Status = status
	u.LastUpdated = o.tick()
}

// DeleteUser removes a user (Okta deletes only deactivated users) and
// their memberships.
func (o *Org) DeleteUser(id string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.users, id)
	for gid, m := range o.members {
		if m[id] {
			delete(m, id)
			o.groups[gid].LastMembershipUpdated = o.tick()
		}
	}
}

// PutGroup adds or renames a group.
func (o *Org) PutGroup(id, name string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	g := o.groups[id]
	if g == nil {
		g = &Group{ID: id}
		o.groups[id] = g
		o.members[id] = map[string]bool{}
	}
	g.Name = name
	g.LastUpdated = o.tick()
}

// DeleteGroup removes a group.
func (o *Org) DeleteGroup(id string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.groups, id)
	delete(o.members, id)
}

// SetMember adds (in) or removes a user from a group.
func (o *Org) SetMember(groupID, userID string, in bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if in {
		o.members[groupID][userID] = true
	} else {
		delete(o.members[groupID], userID)
	}
	o.groups[groupID].LastMembershipUpdated = o.tick()
}

// AddEvent appends a System Log event (the JSON map Okta would send; uuid
// and published must be set). Events may be added with any published time:
// the log is served in the order events were added, as Okta serves a
// polling query in persistence order.
func (o *Org) AddEvent(e Event) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.logs = append(o.logs, e)
}

// tick returns the org's time, at millisecond precision as Okta keeps it.
func (o *Org) tick() time.Time {
	return o.now().UTC().Truncate(time.Millisecond)
}

// api wraps an API handler with validation, authentication, scope
// checks, injected failures and rate-limit headers.
func (o *Org) api(scope string, h func(w http.ResponseWriter, r *http.Request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		o.requests = append(o.requests, r.Method+" "+r.URL.Path)
		if err := o.validate(r); err != nil {
			o.invalid = append(o.invalid, r.Method+" "+r.URL.String()+": "+err.Error())
			o.mu.Unlock()
			writeError(w, 400, "E0000001", "Api validation failed: "+err.Error())
			return
		}
		grant, ok := o.authenticate(r)
		if !ok {
			o.mu.Unlock()
			writeError(w, 401, "E0000011", "Invalid token provided")
			return
		}
		o.rateHeaders(w)
		if len(o.fail) > 0 && o.failSkip > 0 {
			o.failSkip--
		} else if len(o.fail) > 0 {
			status := o.fail[0]
			o.fail = o.fail[1:]
			o.mu.Unlock()
			if status == 429 {
				// Okta's own: the window is spent until its reset.
				w.Header().Set("X-Rate-Limit-Remaining", "0")
				writeError(w, 429, "E0000047", "API call exceeded rate limit due to too many requests.")
				return
			}
			writeError(w, status, "E0000009", "Internal Server Error")
			return
		}
		o.mu.Unlock()
		if !grant[scope] {
			writeError(w, 403, "E0000006", "You do not have permission to perform the requested action")
			return
		}
		h(w, r)
	}
}

// authenticate returns the request's credential's grant. Called locked.
func (o *Org) authenticate(r *http.Request) (Grant, bool) {
	auth := r.Header.Get("Authorization")
	if t, ok := strings.CutPrefix(auth, "SSWS "); ok {
		g, ok := o.tokens[t]
		return g, ok
	}
	if t, ok := strings.CutPrefix(auth, "Bearer "); ok {
		a, ok := o.access[t]
		if !ok || !o.now().Before(a.expires) {
			return nil, false
		}
		return a.scopes, true
	}
	return nil, false
}

// rateHeaders counts the request in the current window. Called locked.
func (o *Org) rateHeaders(w http.ResponseWriter) {
	now := o.now()
	if !now.Before(o.window.reset) {
		o.window = rateWindow{limit: RateLimit, reset: now.Truncate(time.Second).Add(time.Minute)}
	}
	o.window.used++
	w.Header().Set("X-Rate-Limit-Limit", strconv.Itoa(o.window.limit))
	w.Header().Set("X-Rate-Limit-Remaining", strconv.Itoa(max(o.window.limit-o.window.used, 0)))
	w.Header().Set("X-Rate-Limit-Reset", strconv.FormatInt(o.window.reset.Unix(), 10))
}

func writeError(w http.ResponseWriter, status int, code, summary string) {
	id := make([]byte, 8)
	rand.Read(id)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{
		"errorCode": code, "errorSummary": summary, "errorLink": code,
		"errorId": "oae" + hex.EncodeToString(id), "errorCauses": []any{},
	})
}

// cursor and uncursor make `after` values opaque, as Okta's are.
func cursor(s string) string { return base64.RawURLEncoding.EncodeToString([]byte("c1:" + s)) }

func uncursor(s string) (string, bool) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || !strings.HasPrefix(string(b), "c1:") {
		return "", false
	}
	return string(b[3:]), true
}

// limit reads the limit parameter within [1, max].
func limit(r *http.Request, def, maxLimit int) int {
	n, err := strconv.Atoi(r.URL.Query().Get("limit"))
	if err != nil || n <= 0 {
		return def
	}
	return min(n, maxLimit)
}

// page writes one page of items, sorted by key, after the request's
// cursor, with a next link when more follow.
func page[T any](o *Org, w http.ResponseWriter, r *http.Request, items []T, key func(T) string, render func(T) any, def, maxLimit int) {
	sort.Slice(items, func(i, j int) bool { return key(items[i]) < key(items[j]) })
	q := r.URL.Query()
	if a := q.Get("after"); a != "" {
		k, ok := uncursor(a)
		if !ok {
			writeError(w, 400, "E0000031", "Invalid search criteria.")
			return
		}
		i := sort.Search(len(items), func(i int) bool { return key(items[i]) > k })
		items = items[i:]
	}
	n := limit(r, def, maxLimit)
	self := o.linkURL(r, q)
	w.Header().Add("Link", "<"+self+`>; rel="self"`)
	if len(items) > n {
		items = items[:n]
		q.Set("after", cursor(key(items[n-1])))
		w.Header().Add("Link", "<"+o.linkURL(r, q)+`>; rel="next"`)
	}
	out := make([]any, len(items))
	for i, it := range items {
		out[i] = render(it)
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}

func (o *Org) linkURL(r *http.Request, q url.Values) string {
	return o.Server.URL + r.URL.Path + "?" + q.Encode()
}

func ts(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

func (u *User) json() any {
	return map[string]any{
		"id": u.ID, "status": u.Status, "created": ts(u.LastUpdated), "lastUpdated": ts(u.LastUpdated),
		"profile": map[string]any{"login": u.Login, "email": u.Email, "firstName": u.FirstName, "lastName": u.LastName},
		"_links":  map[string]any{"self": map[string]any{"href": "/api/v1/users/" + u.ID}},
	}
}

// Expressions the fake understands: `field op "value"` terms joined by
// `or`, for the fields the verifier filters on.
var term = regexp.MustCompile(`^\s*(lastUpdated|lastMembershipUpdated|status|eventType)\s+(gt|eq)\s+"([^"]*)"\s*$`)

type pred func(field func(string) string) bool

func parseExpr(s string) (pred, bool) {
	var terms []pred
	for _, part := range strings.Split(s, " or ") {
		m := term.FindStringSubmatch(part)
		if m == nil {
			return nil, false
		}
		f, op, v := m[1], m[2], m[3]
		if op == "gt" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return nil, false
			}
			terms = append(terms, func(field func(string) string) bool {
				ft, err := time.Parse(time.RFC3339Nano, field(f))
				return err == nil && ft.After(t)
			})
		} else {
			terms = append(terms, func(field func(string) string) bool { return field(f) == v })
		}
	}
	return func(field func(string) string) bool {
		for _, t := range terms {
			if t(field) {
				return true
			}
		}
		return false
	}, true
}

func (o *Org) listUsers(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	expr := q.Get("search")
	if expr == "" {
		expr = q.Get("filter")
	}
	var p pred
	if expr != "" {
		var ok bool
		if p, ok = parseExpr(expr); !ok {
			writeError(w, 400, "E0000031", "Invalid search criteria.")
			return
		}
	}
	o.mu.Lock()
	var us []*User
	for _, u := range o.users {
		c := *u
		if p == nil {
			// Okta leaves deactivated users out of a plain list.
			if c.Status == "DEPROVISIONED" {
				continue
			}
		} else if !p(func(f string) string {
			switch f {
			case "status":
				return c.Status
			case "lastUpdated":
				return ts(c.LastUpdated)
			}
			return ""
		}) {
			continue
		}
		us = append(us, &c)
	}
	o.mu.Unlock()
	page(o, w, r, us, func(u *User) string { return u.ID }, (*User).json, 200, 200)
}

func (o *Org) listGroups(w http.ResponseWriter, r *http.Request) {
	var p pred
	if expr := r.URL.Query().Get("filter"); expr != "" {
		var ok bool
		if p, ok = parseExpr(expr); !ok {
			writeError(w, 400, "E0000031", "Invalid search criteria.")
			return
		}
	}
	o.mu.Lock()
	var gs []Group
	for _, g := range o.groups {
		c := *g
		if p != nil && !p(func(f string) string {
			switch f {
			case "lastUpdated":
				return ts(c.LastUpdated)
			case "lastMembershipUpdated":
				return ts(c.LastMembershipUpdated)
			}
			return ""
		}) {
			continue
		}
		gs = append(gs, c)
	}
	o.mu.Unlock()
	page(o, w, r, gs, func(g Group) string { return g.ID }, func(g Group) any {
		return map[string]any{"id": g.ID, "type": "OKTA_GROUP", "lastUpdated": ts(g.LastUpdated),
			"lastMembershipUpdated": ts(g.LastMembershipUpdated),
			"profile":               map[string]any{"name": g.Name, "description": ""}}
	}, 10000, 10000)
}

func (o *Org) listMembers(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	o.mu.Lock()
	m, ok := o.members[id]
	var us []*User
	for uid := range m {
		if u := o.users[uid]; u != nil {
			c := *u
			us = append(us, &c)
		}
	}
	o.mu.Unlock()
	if !ok {
		writeError(w, 404, "E0000007", "Not found: Resource not found: "+id+" (UserGroup)")
		return
	}
	page(o, w, r, us, func(u *User) string { return u.ID }, (*User).json, 1000, 10000)
}

func (o *Org) listApps(w http.ResponseWriter, r *http.Request) {
	apps := []string{"0oaclearance"}
	page(o, w, r, apps, func(s string) string { return s }, func(s string) any {
		return map[string]any{"id": s, "label": "Clearance", "status": "ACTIVE"}
	}, 20, 200)
}

// listLogs serves the System Log in persistence order. A query without
// `until` is a polling query: its last page still carries a next link,
// which returns the events added since.
func (o *Org) listLogs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var since, until time.Time
	var err error
	if s := q.Get("since"); s != "" {
		if since, err = time.Parse(time.RFC3339Nano, s); err != nil {
			writeError(w, 400, "E0000001", "Api validation failed: since")
			return
		}
	}
	if s := q.Get("until"); s != "" {
		if until, err = time.Parse(time.RFC3339Nano, s); err != nil {
			writeError(w, 400, "E0000001", "Api validation failed: until")
			return
		}
	}
	var p pred
	if expr := q.Get("filter"); expr != "" {
		var ok bool
		if p, ok = parseExpr(expr); !ok {
			writeError(w, 400, "E0000031", "Invalid search criteria.")
			return
		}
	}
	start := 0
	if a := q.Get("after"); a != "" {
		k, ok := uncursor(a)
		n, err := strconv.Atoi(k)
		if !ok || err != nil || n < 0 {
			writeError(w, 400, "E0000031", "Invalid search criteria.")
			return
		}
		start = n
	}
	n := limit(r, 100, 1000)
	o.mu.Lock()
	var out []Event
	pos := start
	for ; pos < len(o.logs) && len(out) < n; pos++ {
		e := o.logs[pos]
		pub, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(e["published"]))
		if !since.IsZero() && pub.Before(since) {
			continue
		}
		if !until.IsZero() && !pub.Before(until) {
			continue
		}
		if p != nil && !p(func(f string) string { return fmt.Sprint(e[f]) }) {
			continue
		}
		out = append(out, e)
	}
	more := pos < len(o.logs)
	o.mu.Unlock()
	w.Header().Add("Link", "<"+o.linkURL(r, q)+`>; rel="self"`)
	if until.IsZero() || more {
		q.Set("after", cursor(strconv.Itoa(pos)))
		w.Header().Add("Link", "<"+o.linkURL(r, q)+`>; rel="next"`)
	}
	if out == nil {
		out = []Event{}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}
