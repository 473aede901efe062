package admin

import (
	"bytes"
	"context"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	"github.com/clearance/clearance/verifier/metrics"
	"github.com/clearance/clearance/verifier/storage"
)

// adminMethods are the calls only role admin may make: they change what
// the verifier stores, decides or asks of a Mac. With readMethods they
// name every AdminService call.
var adminMethods = map[string]bool{
	"RevokeDevice": true, "ReloadPolicies": true, "CreateEnrollSecret": true, "RevokeEnrollSecret": true,
	"RequestCheck": true, "CreateScepChallenge": true, "RevokeBrowserCertificate": true,
	"ApproveEnrollment": true, "RejectEnrollment": true, "ImportKnownDevices": true,
	"GrantExemption": true, "RevokeExemption": true, "AssignDevice": true, "UnassignDevice": true,
	"ExpectReinstall": true,
}

// A call added to the service must be placed deliberately: read tokens
// are refused every call readMethods does not name.
func TestEveryMethodHasARole(t *testing.T) {
	var all []string
	for _, m := range adminv1.AdminService_ServiceDesc.Methods {
		all = append(all, m.MethodName)
	}
	for _, s := range adminv1.AdminService_ServiceDesc.Streams {
		all = append(all, s.StreamName)
	}
	for _, m := range all {
		if readMethods[m] == adminMethods[m] {
			t.Errorf("%s: in readMethods %v, in adminMethods %v; it must be in exactly one", m, readMethods[m], adminMethods[m])
		}
	}
	for m := range readMethods {
		if !slices.Contains(all, m) {
			t.Errorf("readMethods names %s, which AdminService does not have", m)
		}
	}
	for m := range adminMethods {
		if !slices.Contains(all, m) {
			t.Errorf("adminMethods names %s, which AdminService does not have", m)
		}
	}
}

func TestCheckTokenName(t *testing.T) {
	for _, ok := range []string{"alice@example.com", "ci-bot", "a", "first.last+ops@example.co.uk", "X_Y"} {
		if err := CheckTokenName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	long := make([]byte, MaxTokenName+1)
	for i := range long {
		long[i] = 'a'
	}
	for _, bad := range []string{"", "alice smith", "аlice@example.com", "alice\u200b", "a\x00", "a\nb", "a:b", "a/b", "\xff", string(long), "ａlice"} {
		if err := CheckTokenName(bad); err == nil {
			t.Errorf("%q: accepted", bad)
		}
	}
}

func TestCheckRole(t *testing.T) {
	for _, ok := range []string{"read", "admin"} {
		if err := CheckRole(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "Read", "ADMIN", "owner", "read "} {
		if err := CheckRole(bad); err == nil {
			t.Errorf("%q: accepted", bad)
		}
	}
}

// memTokens is an AdminTokenStore in memory.
type memTokens struct {
	storage.AdminTokenStore
	recs map[string]storage.AdminToken
}

func (m *memTokens) GetAdminToken(_ context.Context, id string) (storage.AdminToken, error) {
	r, ok := m.recs[id]
	if !ok {
		return storage.AdminToken{}, storage.ErrNotFound
	}
	return r, nil
}

func (m *memTokens) CreateAdminToken(_ context.Context, t storage.AdminToken, _ storage.AuditEvent) error {
	m.recs[t.ID] = t
	return nil
}

// authCall runs a's unary interceptor for method with the authorization
// header value auth, and returns the caller the handler saw.
func authCall(a *Auth, method, auth string) (Caller, error) {
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", auth))
	unary, _ := a.Interceptors()
	var seen Caller
	_, err := unary(ctx, nil, &grpc.UnaryServerInfo{FullMethod: servicePrefix + method}, func(ctx context.Context, _ any) (any, error) {
		seen = CallerFrom(ctx)
		return nil, nil
	})
	return seen, err
}

// The scheme in any case; nothing but spaces and tabs trimmed; a revoked
// token's refusals logged apart from a flood of garbage.
func TestAuthHeaderAndLog(t *testing.T) {
	now := time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC)
	store := &memTokens{recs: map[string]storage.AdminToken{}}
	_, reader, err := CreateNamedToken(context.Background(), store, "bob@example.com", storage.AdminRoleRead, time.Time{}, "cli", now)
	if err != nil {
		t.Fatal(err)
	}
	rec, revoked, err := CreateNamedToken(context.Background(), store, "carol@example.com", storage.AdminRoleAdmin, time.Time{}, "cli", now)
	if err != nil {
		t.Fatal(err)
	}
	rec.RevokedAt = now
	store.recs[rec.ID] = rec
	var logged bytes.Buffer
	m := metrics.New()
	a := &Auth{Token: "datadir-token-0123456789abcdef0123", Store: store, Now: func() time.Time { return now },
		Logger: slog.New(slog.NewTextHandler(&logged, nil)), Metrics: m}

	for _, h := range []string{"Bearer " + reader, "bearer " + reader, "BEARER  " + reader + "\t"} {
		if c, err := authCall(a, "ListDevices", h); err != nil || c.Name != "bob@example.com" || c.Role != storage.AdminRoleRead {
			t.Errorf("%q: %v %+v", h, err, c)
		}
	}
	for _, h := range []string{"Bearer " + reader + "\u00a0", "Bearer " + reader + "\u2028", "Bearer\u00a0" + reader, "Basic " + reader, reader, "Bearer"} {
		if _, err := authCall(a, "ListDevices", h); status.Code(err) != codes.Unauthenticated {
			t.Errorf("%q: %v, want Unauthenticated", h, err)
		}
	}
	if _, err := authCall(a, "RevokeDevice", "Bearer "+reader); status.Code(err) != codes.PermissionDenied {
		t.Errorf("a read token's RevokeDevice: %v", err)
	}

	logged.Reset()
	now = now.Add(refusedLogEvery + time.Second)
	// Garbage, and a real token's id with a made-up value (ids are in the
	// audit log): neither hides a revoked token's use.
	readerID := reader[len(NamedTokenPrefix) : len(NamedTokenPrefix)+16]
	// Nor does a read token's holder calling what its role forbids.
	for range 500 {
		authCall(a, "ListDevices", "Bearer garbage")
		authCall(a, "ListDevices", "Bearer "+NamedTokenPrefix+readerID+"."+strings.Repeat("A", 43))
		authCall(a, "RevokeDevice", "Bearer "+reader)
	}
	if _, err := authCall(a, "ListDevices", "Bearer "+revoked); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("a revoked token: %v", err)
	}
	if !strings.Contains(logged.String(), "is revoked") || !strings.Contains(logged.String(), "carol@example.com") {
		t.Errorf("the revoked token's refusal is hidden by the flood:\n%s", logged.String())
	}
	for _, secret := range []string{reader, revoked} {
		if strings.Contains(logged.String(), secret[len(secret)-20:]) {
			t.Errorf("the log holds a token's secret")
		}
	}
	// Every refusal is counted by its reason.
	want := map[string]float64{"malformed": 4, "unknown": 1002, "role": 501, "revoked": 1, "no_token": 0, "expired": 0, "unavailable": 0}
	got := map[string]float64{}
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "clearance_admin_refused_total" {
			continue
		}
		for _, c := range f.GetMetric() {
			got[c.GetLabel()[0].GetValue()] = c.GetCounter().GetValue()
		}
	}
	if !maps.Equal(got, want) {
		t.Errorf("clearance_admin_refused_total = %v, want %v", got, want)
	}
}

// fakeStream is a ServerStream with a context.
type fakeStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *fakeStream) Context() context.Context { return s.ctx }

// An agent's stream reaches its handler as the server made it: grpclite
// ends a replaced or revoked device's stream through its own type.
func TestOtherStreamsPassUnwrapped(t *testing.T) {
	_, stream := (&Auth{Token: "datadir-token-0123456789abcdef0123"}).Interceptors()
	ss := &fakeStream{ctx: context.Background()}
	var got grpc.ServerStream
	err := stream(nil, ss, &grpc.StreamServerInfo{FullMethod: "/clearance.agent.v1.AgentService/Connect"}, func(_ any, s grpc.ServerStream) error {
		got = s
		return nil
	})
	if err != nil || got != ss {
		t.Fatalf("the agent's stream: %v, handler got %T", err, got)
	}
}
