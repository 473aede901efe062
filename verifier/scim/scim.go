// Package scim owns the verifier's SCIM 2.0 service provider (RFC 7643,
// RFC 7644) at /scim/v2: the users and groups Okta provisions, as Okta's
// provisioning speaks it. Requests carry a bearer token from `scim token
// create`; every change is stored with an audit event naming that token.
//
// Bad input is answered with a SCIM Error body and changes nothing.
package scim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/clearance/clearance/pkg/logsample"
	"github.com/clearance/clearance/verifier/storage"
)

// Prefix is where the service provider is mounted on the sign-in listener.
const Prefix = "/scim/v2"

// Limits on what a client can make the handler read or send.
const (
	// MaxBody bounds a request body: a group PATCH that adds many members
	// at once is the largest Okta sends.
	MaxBody = 1 << 20
	// DefaultCount is the page size when a list names none.
	DefaultCount = 100
	// MaxCount caps a list's count (ServiceProviderConfig's
	// filter.maxResults).
	MaxCount = 200
	// MaxOperations bounds a PATCH's operations.
	MaxOperations = 1000
	// updateAttempts bounds the retries of a change that raced another.
	updateAttempts = 5
)

// URNs of the schemas and messages served.
const (
	UserSchema       = "urn:ietf:params:scim:schemas:core:2.0:User"
	EnterpriseSchema = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
	GroupSchema      = "urn:ietf:params:scim:schemas:core:2.0:Group"
	ListSchema       = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
	PatchSchema      = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
	ErrorSchema      = "urn:ietf:params:scim:api:messages:2.0:Error"
)

// Handler serves /scim/v2.
type Handler struct {
	Store storage.PeopleStore
	// BaseURL is the service provider's public URL, ending in /scim/v2,
	// for meta.location.
	BaseURL string
	Log     *slog.Logger
	Now     func() time.Time
	// NewID makes a resource id; nil: 16 random bytes in hex.
	NewID func() string

	// refusedLog spaces the log lines of refusals, by status and type.
	refusedLog logsample.Samples
	// counted is what room counts against.
	counted peopleCount
}

// refusedLogEvery is how often a kind of refusal is logged; the others
// are counted in its next line.
const refusedLogEvery = 10 * time.Second

// maxLoggedDetail bounds a refusal's detail in the log: details quote
// what the request sent (an attribute's name, a filter).
const maxLoggedDetail = 256

func clipDetail(s string) string {
	if len(s) > maxLoggedDetail {
		return strings.ToValidUTF8(s[:maxLoggedDetail], "") + "…"
	}
	return s
}

// Error is a SCIM error (RFC 7644 §3.12).
type Error struct {
	Status   int
	ScimType string
	Detail   string
}

func (e *Error) Error() string { return e.Detail }

func errorf(status int, scimType, format string, args ...any) *Error {
	return &Error{Status: status, ScimType: scimType, Detail: fmt.Sprintf(format, args...)}
}

// ServeHTTP authenticates the request and routes it.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	tok, err := h.authenticate(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	ctx := context.WithValue(r.Context(), actorKey{}, "scim:"+tok.ID)
	r = r.WithContext(ctx)
	r.Body = http.MaxBytesReader(w, r.Body, MaxBody)
	rest, ok := strings.CutPrefix(r.URL.Path, Prefix)
	if !ok {
		h.fail(w, r, errorf(http.StatusNotFound, "", "no such endpoint"))
		return
	}
	kind, id, _ := strings.Cut(strings.TrimPrefix(rest, "/"), "/")
	if strings.Contains(id, "/") {
		h.fail(w, r, errorf(http.StatusNotFound, "", "no such endpoint"))
		return
	}
	var (
		status int
		body   any
	)
	switch {
	case kind == "Users" && id == "" && r.Method == http.MethodGet:
		status, body, err = h.listUsers(r)
	case kind == "Users" && id == "" && r.Method == http.MethodPost:
		status, body, err = h.createUser(r)
	case kind == "Users" && id != "" && r.Method == http.MethodGet:
		status, body, err = h.getUser(r, id)
	case kind == "Users" && id != "" && r.Method == http.MethodPut:
		status, body, err = h.replaceUser(r, id)
	case kind == "Users" && id != "" && r.Method == http.MethodPatch:
		status, body, err = h.patchUser(r, id)
	case kind == "Users" && id != "" && r.Method == http.MethodDelete:
		status, body, err = h.deleteUser(r, id)
	case kind == "Groups" && id == "" && r.Method == http.MethodGet:
		status, body, err = h.listGroups(r)
	case kind == "Groups" && id == "" && r.Method == http.MethodPost:
		status, body, err = h.createGroup(r)
	case kind == "Groups" && id != "" && r.Method == http.MethodGet:
		status, body, err = h.getGroup(r, id)
	case kind == "Groups" && id != "" && r.Method == http.MethodPut:
		status, body, err = h.replaceGroup(r, id)
	case kind == "Groups" && id != "" && r.Method == http.MethodPatch:
		status, body, err = h.patchGroup(r, id)
	case kind == "Groups" && id != "" && r.Method == http.MethodDelete:
		status, body, err = h.deleteGroup(r, id)
	case kind == "ServiceProviderConfig" && id == "" && r.Method == http.MethodGet:
		status, body = http.StatusOK, h.serviceProviderConfig()
	case kind == "Schemas" && r.Method == http.MethodGet:
		status, body, err = h.schemas(id)
	case kind == "ResourceTypes" && r.Method == http.MethodGet:
		status, body, err = h.resourceTypes(id)
	case kind == "Users" || kind == "Groups" || kind == "ServiceProviderConfig" || kind == "Schemas" || kind == "ResourceTypes":
		err = errorf(http.StatusMethodNotAllowed, "", "method %s is not supported here", r.Method)
	default:
		err = errorf(http.StatusNotFound, "", "no such endpoint")
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if m, ok := body.(map[string]any); ok && status == http.StatusCreated {
		if mt, ok := m["meta"].(map[string]any); ok {
			w.Header().Set("Location", fmt.Sprint(mt["location"]))
		}
	}
	h.write(w, status, body)
}

type actorKey struct{}

// actor is the audit actor of the request: "scim:<token id>".
func actor(ctx context.Context) string {
	a, _ := ctx.Value(actorKey{}).(string)
	return a
}

func (h *Handler) authenticate(r *http.Request) (storage.SCIMToken, error) {
	auth := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return storage.SCIMToken{}, errorf(http.StatusUnauthorized, "", "a bearer token is required")
	}
	tok, err := CheckToken(r.Context(), h.Store, strings.TrimSpace(token))
	if errors.Is(err, ErrBadToken) {
		return storage.SCIMToken{}, errorf(http.StatusUnauthorized, "", "the bearer token is not valid")
	}
	if err != nil {
		return storage.SCIMToken{}, err
	}
	return tok, nil
}

func (h *Handler) now() time.Time {
	if h.Now == nil {
		return time.Now()
	}
	return h.Now()
}

// fail writes err as a SCIM error; a storage failure is logged and told
// as a 500 without its cause.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	var e *Error
	if !errors.As(err, &e) {
		if ok, skipped := h.refusedLog.Take("500", refusedLogEvery, h.now()); ok {
			h.log().Error("scim request failed", "component", "scim", "method", logsample.Clip(r.Method), "path", logsample.Clip(r.URL.Path),
				"err", clipDetail(err.Error()), "others_not_logged", skipped)
		}
		e = errorf(http.StatusInternalServerError, "", "the request could not be completed; try again")
	} else if e.Status != http.StatusUnauthorized {
		// A token's holder can send refusals as often as it likes: one
		// line per kind every refusedLogEvery, the sender's text clipped.
		if ok, skipped := h.refusedLog.Take(strconv.Itoa(e.Status)+" "+e.ScimType, refusedLogEvery, h.now()); ok {
			h.log().Info("scim request refused", "component", "scim", "method", logsample.Clip(r.Method), "path", logsample.Clip(r.URL.Path),
				"status", e.Status, "scim_type", e.ScimType, "detail", clipDetail(e.Detail), "others_not_logged", skipped)
		}
	}
	if e.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="scim"`)
	}
	body := map[string]any{"schemas": []string{ErrorSchema}, "status": strconv.Itoa(e.Status), "detail": e.Detail}
	if e.ScimType != "" {
		body["scimType"] = e.ScimType
	}
	h.write(w, e.Status, body)
}

// WriteError writes a SCIM error body outside the handler (the rate
// limiter's refusal).
func WriteError(w http.ResponseWriter, status int, detail string) {
	(&Handler{}).write(w, status, map[string]any{"schemas": []string{ErrorSchema}, "status": strconv.Itoa(status), "detail": detail})
}

func (h *Handler) log() *slog.Logger {
	if h.Log == nil {
		return slog.Default()
	}
	return h.Log
}

func (h *Handler) write(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/scim+json")
	w.Header().Set("Cache-Control", "no-store")
	if body == nil {
		w.WriteHeader(status)
		return
	}
	data, err := json.Marshal(body)
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	w.WriteHeader(status)
	_, _ = w.Write(data)
}

// readJSON reads a bounded JSON object body into a map (numbers as
// json.Number), refusing other media types, trailing data and oversized
// bodies.
func readJSON(r *http.Request) (map[string]any, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/scim+json" && mt != "application/json") {
			return nil, errorf(http.StatusUnsupportedMediaType, "", "the body must be application/scim+json or application/json")
		}
	}
	data, err := io.ReadAll(r.Body)
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, errorf(http.StatusRequestEntityTooLarge, "", "the body is larger than %d bytes", MaxBody)
	}
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "invalidSyntax", "the body could not be read")
	}
	return decodeObject(data)
}

// readBody reads the request's JSON object as parse reads it: a User, a
// Group or a PATCH.
func readBody[T any](r *http.Request, parse func(map[string]any) (T, error)) (T, error) {
	body, err := readJSON(r)
	if err != nil {
		var zero T
		return zero, err
	}
	return parse(body)
}

// decodeObject parses one JSON object.
func decodeObject(data []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil || m == nil {
		return nil, errorf(http.StatusBadRequest, "invalidSyntax", "the body is not a JSON object")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errorf(http.StatusBadRequest, "invalidSyntax", "the body has data after its JSON object")
	}
	return m, nil
}

// listQuery reads a list request's paging and its filter, on nameAttr
// (userName, displayName) or externalId. none: the filter's value is
// empty, which matches nothing stored, so the answer is an empty list.
func listQuery(r *http.Request, kind, nameAttr string) (q storage.PeopleQuery, start int, none bool, err error) {
	start, count, err := listParams(r)
	if err != nil {
		return q, 0, false, err
	}
	q = storage.PeopleQuery{Offset: start - 1, Limit: count}
	f := r.URL.Query().Get("filter")
	if f == "" {
		return q, start, false, nil
	}
	flt, err := ParseFilter(f)
	if err != nil {
		return q, 0, false, errorf(http.StatusBadRequest, "invalidFilter", "%v", err)
	}
	switch strings.ToLower(flt.Attr) {
	case strings.ToLower(nameAttr):
		q.Name = flt.Value
	case "externalid":
		q.ExternalID = flt.Value
	default:
		return q, 0, false, errorf(http.StatusBadRequest, "invalidFilter", "filtering %s by %q is not supported (%s or externalId)",
			kind, clip(flt.Attr), nameAttr)
	}
	return q, start, q.Name == "" && q.ExternalID == "", nil
}

// listParams reads startIndex and count (RFC 7644 §3.4.2.4): startIndex
// below 1 counts as 1, count below 0 as 0, and count is capped.
func listParams(r *http.Request) (start, count int, err error) {
	q := r.URL.Query()
	start, count = 1, DefaultCount
	if v := q.Get("startIndex"); v != "" {
		n, perr := strconv.Atoi(v)
		if perr != nil {
			return 0, 0, errorf(http.StatusBadRequest, "invalidValue", "startIndex %q is not an integer", clip(v))
		}
		start = max(n, 1)
	}
	if v := q.Get("count"); v != "" {
		n, perr := strconv.Atoi(v)
		if perr != nil {
			return 0, 0, errorf(http.StatusBadRequest, "invalidValue", "count %q is not an integer", clip(v))
		}
		count = min(max(n, 0), MaxCount)
	}
	return start, count, nil
}

// clip shortens client text repeated in an error.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

func listResponse(total, start int, resources []any) map[string]any {
	if resources == nil {
		resources = []any{}
	}
	return map[string]any{
		"schemas":      []string{ListSchema},
		"totalResults": total,
		"startIndex":   start,
		"itemsPerPage": len(resources),
		"Resources":    resources,
	}
}

func (h *Handler) newID() (string, error) {
	if h.NewID != nil {
		return h.NewID(), nil
	}
	return randomID()
}

// storeErr turns a storage error into the SCIM error a client can act on.
func storeErr(err error, what string) error {
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return errorf(http.StatusNotFound, "", "%s not found", what)
	case errors.Is(err, storage.ErrAlreadyExists):
		return errorf(http.StatusConflict, "uniqueness", "%s already exists", what)
	case errors.Is(err, storage.ErrUnknownMember):
		return errorf(http.StatusBadRequest, "invalidValue", "a member is not a known user")
	}
	return err
}

func meta(kind, location string, version int64, created, updated time.Time) map[string]any {
	return map[string]any{
		"resourceType": kind,
		"created":      created.UTC().Format(time.RFC3339Nano),
		"lastModified": updated.UTC().Format(time.RFC3339Nano),
		"location":     location,
		"version":      fmt.Sprintf(`W/"%d"`, version),
	}
}
