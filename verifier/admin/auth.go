package admin

import (
	"context"
	"crypto/subtle"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
)

// servicePrefix is the full-method prefix of every AdminService call.
var servicePrefix = "/" + adminv1.AdminService_ServiceDesc.ServiceName + "/"

// TokenAuth returns interceptors that require `authorization: Bearer <token>`
// on every AdminService call and leave every other service alone (agents
// authenticate with certificates; health and reflection are public).
func TokenAuth(token string) (grpc.UnaryServerInterceptor, grpc.StreamServerInterceptor) {
	check := func(ctx context.Context, method string) error {
		if !strings.HasPrefix(method, servicePrefix) {
			return nil
		}
		md, _ := metadata.FromIncomingContext(ctx)
		vals := md.Get("authorization")
		if len(vals) == 0 {
			return status.Error(codes.Unauthenticated, "admin calls need the header 'authorization: Bearer <token>' with the token from DATA_DIR/admin.token")
		}
		got, ok := strings.CutPrefix(vals[0], "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(token)) != 1 {
			return status.Error(codes.Unauthenticated, "admin token is not valid")
		}
		return nil
	}
	unary := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if err := check(ctx, info.FullMethod); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
	stream := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if err := check(ss.Context(), info.FullMethod); err != nil {
			return err
		}
		return handler(srv, ss)
	}
	return unary, stream
}
