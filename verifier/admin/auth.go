package admin

import (
	"context"
	"crypto/subtle"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/clearance/clearance/pkg/logsample"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	"github.com/clearance/clearance/verifier/metrics"
	"github.com/clearance/clearance/verifier/storage"
)

// servicePrefix is the full-method prefix of every AdminService call.
var servicePrefix = "/" + adminv1.AdminService_ServiceDesc.ServiceName + "/"

// readMethods are the AdminService calls a token with role read may make:
// they list and read, and change nothing the verifier stores or decides.
// Every other call needs role admin, so a call added later is refused to
// read tokens until it is listed here (TestEveryMethodHasARole).
var readMethods = map[string]bool{
	"ListDevices": true, "GetDevice": true, "ListPolicies": true, "ListEnrollSecrets": true,
	"ListDecisions": true, "ListAuditEvents": true, "OktaStatus": true, "ListOktaSignIns": true,
	"ExplainAccess": true, "ListBrowserCertificates": true, "ListPendingEnrollments": true,
	"ListExemptions": true, "ListUsers": true, "GetUser": true, "ListGroups": true,
	"WhoAmI": true, "ForecastEnforcement": true,
}

// DataDirActor is the audit log's actor for changes made with the data
// dir's admin.token.
const DataDirActor = "admin-api"

// Caller is who made an admin call.
type Caller struct {
	// Name is the named token's holder; empty for the data dir's token.
	Name string
	// TokenID is the named token's id; empty for the data dir's token.
	TokenID string
	// Role is storage.AdminRoleRead or storage.AdminRoleAdmin.
	Role string
	// ExpiresAt is when the named token stops working; zero: never (and
	// for the data dir's token).
	ExpiresAt time.Time
	// Process names a call the verifier makes of itself (SighupActor);
	// empty for a call through the admin API.
	Process string
}

// SighupActor is the audit actor of what SIGHUP changes: the policy file and
// the enforcement ceiling read again. Who sent the signal is not known.
const SighupActor = "sighup"

// InProcess returns ctx for a call the verifier makes of its own admin
// service, audited as actor (SighupActor), with every call allowed.
func InProcess(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, callerKey{}, Caller{Role: storage.AdminRoleAdmin, Process: actor})
}

// Actor is how the audit log names the caller: Process for the verifier's
// own call, "admin:"+Name for a named token, DataDirActor for the data
// dir's.
func (c Caller) Actor() string {
	if c.Process != "" {
		return c.Process
	}
	if c.Name == "" {
		return DataDirActor
	}
	return "admin:" + c.Name
}

type callerKey struct{}

// CallerFrom returns the caller Auth put in ctx; a context without one
// (a call made in process, not through Auth) is the data dir's token.
func CallerFrom(ctx context.Context) Caller {
	c, ok := ctx.Value(callerKey{}).(Caller)
	if !ok {
		return Caller{Role: storage.AdminRoleAdmin}
	}
	return c
}

// actor is the audit actor of the call in ctx.
func actor(ctx context.Context) string { return CallerFrom(ctx).Actor() }

// Auth checks every AdminService call's `authorization: Bearer <token>`:
// the data dir's admin.token (every call), or a named token (see
// CreateNamedToken) that is neither revoked nor expired, whose role must
// allow the call. Other services are left alone (agents authenticate with
// certificates; health and reflection are public).
type Auth struct {
	// Token is the data dir's admin.token.
	Token string
	// Store holds the named tokens; nil: only Token is accepted.
	Store storage.AdminTokenStore
	// Now is the clock; nil: time.Now.
	Now    func() time.Time
	Logger *slog.Logger
	// Metrics counts refusals by reason; nil: not counted.
	Metrics *metrics.Metrics

	once sync.Once
	// sample keeps refusals any client can cause to a line per interval;
	// held and role sample apart those only a token's holder can cause (a
	// stored token revoked or expired; a role that does not allow the
	// call), so that a flood of one kind does not hide another.
	sample, held, role logsample.Sample
}

// refusedLogEvery is how often refused admin calls are logged at warn; any
// client can cause them.
const refusedLogEvery = 10 * time.Second

func (a *Auth) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

// refused logs why a call was refused (never the token), at warn at most
// once per refusedLogEvery and each at debug, and returns err.
func (a *Auth) refused(reason, method, why string, err error) error {
	return a.refusedSampled(&a.sample, reason, method, why, err)
}

// refusedHeld is refused for a stored token that is revoked or expired.
func (a *Auth) refusedHeld(reason, method, why string, err error) error {
	return a.refusedSampled(&a.held, reason, method, why, err)
}

// refusedRole is refused for a token whose role does not allow the call.
func (a *Auth) refusedRole(reason, method, why string, err error) error {
	return a.refusedSampled(&a.role, reason, method, why, err)
}

func (a *Auth) refusedSampled(sample *logsample.Sample, reason, method, why string, err error) error {
	a.Metrics.AdminRefused(reason)
	if a.Logger != nil {
		a.once.Do(func() { a.sample.Every, a.held.Every, a.role.Every = refusedLogEvery, refusedLogEvery, refusedLogEvery })
		if ok, skipped := sample.Take(a.now()); ok {
			a.Logger.Warn("admin call refused", "method", method, "why", why, "others_not_logged", skipped)
		} else {
			a.Logger.Debug("admin call refused", "method", method, "why", why)
		}
	}
	return err
}

// authenticate returns the caller of an AdminService call, or its error.
func (a *Auth) authenticate(ctx context.Context, method string) (Caller, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) == 0 {
		return Caller{}, a.refused("no_token", method, "no authorization header", status.Error(codes.Unauthenticated,
			"admin calls need the header 'authorization: Bearer <token>': a named admin token (see 'clearance-verifier admin-token create') or the one in DATA_DIR/admin.token"))
	}
	// The scheme in any case (RFC 9110); around the token, only the
	// spaces and tabs a header may carry.
	scheme, got, ok := strings.Cut(vals[0], " ")
	got = strings.Trim(got, " \t")
	if !ok || !strings.EqualFold(scheme, "Bearer") || got == "" {
		return Caller{}, a.refused("malformed", method, "authorization is not a bearer token", status.Error(codes.Unauthenticated, "the authorization header must read 'Bearer <token>'"))
	}
	if strings.HasPrefix(got, NamedTokenPrefix) && a.Store != nil {
		rec, err := CheckNamedToken(ctx, a.Store, got, a.now())
		if errors.Is(err, ErrBadToken) {
			refused, reason := a.refused, "unknown"
			if rec.ID != "" {
				refused, reason = a.refusedHeld, "expired"
				if rec.Revoked() {
					reason = "revoked"
				}
			}
			return Caller{}, refused(reason, method, err.Error(), status.Error(codes.Unauthenticated, ErrBadToken.Error()))
		}
		if err != nil {
			a.Metrics.AdminRefused("unavailable")
			if a.Logger != nil {
				a.Logger.Error("admin token lookup failed", "method", method, "err", err)
			}
			return Caller{}, status.Error(codes.Unavailable, "the admin token could not be checked: the verifier's database did not answer")
		}
		return Caller{Name: rec.Name, TokenID: rec.ID, Role: rec.Role, ExpiresAt: rec.ExpiresAt}, nil
	}
	if subtle.ConstantTimeCompare([]byte(got), []byte(a.Token)) != 1 {
		return Caller{}, a.refused("unknown", method, "not the data dir's admin token", status.Error(codes.Unauthenticated, ErrBadToken.Error()))
	}
	return Caller{Role: storage.AdminRoleAdmin}, nil
}

// check authenticates an AdminService call and checks its role; other
// services' calls pass as they are.
func (a *Auth) check(ctx context.Context, fullMethod string) (context.Context, error) {
	method, ok := strings.CutPrefix(fullMethod, servicePrefix)
	if !ok {
		return ctx, nil
	}
	c, err := a.authenticate(ctx, method)
	if err != nil {
		return nil, err
	}
	if c.Role != storage.AdminRoleAdmin && !readMethods[method] {
		return nil, a.refusedRole("role", method, "role "+c.Role+" of "+c.Actor(), status.Errorf(codes.PermissionDenied,
			"the admin token of %s has role %s, which lists and reads only; %s changes the verifier and needs a token with role %s",
			c.Name, c.Role, method, storage.AdminRoleAdmin))
	}
	return context.WithValue(ctx, callerKey{}, c), nil
}

// Interceptors returns the unary and stream interceptors that apply a.
func (a *Auth) Interceptors() (grpc.UnaryServerInterceptor, grpc.StreamServerInterceptor) {
	unary := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := a.check(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
	stream := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if !strings.HasPrefix(info.FullMethod, servicePrefix) {
			// Other services' streams (an agent's Connect) pass as they
			// are: their servers may look at the stream's own type.
			return handler(srv, ss)
		}
		ctx, err := a.check(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		return handler(srv, &callerStream{ServerStream: ss, ctx: ctx})
	}
	return unary, stream
}

// callerStream is a ServerStream whose context carries the caller.
type callerStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *callerStream) Context() context.Context { return s.ctx }

// WhoAmI implements AdminService.WhoAmI: the caller as the interceptor
// authenticated it.
func (s *Server) WhoAmI(ctx context.Context, _ *adminv1.WhoAmIRequest) (*adminv1.WhoAmIResponse, error) {
	c := CallerFrom(ctx)
	return &adminv1.WhoAmIResponse{Actor: c.Actor(), Name: c.Name, TokenId: c.TokenID, Role: c.Role, ExpiresAt: ts(c.ExpiresAt)}, nil
}
