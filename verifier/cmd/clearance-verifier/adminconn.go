package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/clearance/clearance/pkg/certpem"
	"github.com/clearance/clearance/pkg/cli"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	"github.com/clearance/clearance/verifier/admin"
	"github.com/clearance/clearance/verifier/ca"
	"github.com/clearance/clearance/verifier/config"
	"github.com/clearance/clearance/verifier/datadir"
	"github.com/clearance/clearance/verifier/secretfile"
)

// defaultVerifier is where the admin API is looked for when the data dir
// does not say.
const defaultVerifier = "localhost:8443"

// adminFlags are the flags of the commands that ask the running verifier.
type adminFlags struct {
	b         *config.Binding
	verifier  *string
	tokenFile *string
	caFile    *string
	getenv    func(string) string
	lookupenv func(string) (string, bool)
	given     func(string) bool
}

// bindAdmin adds the flags that name the verifier and the token to ask it
// with, and binds data-dir and any other settings of serve's the command
// needs.
func (a *app) bindAdmin(fs *cli.FlagSet, settings ...string) adminFlags {
	b := config.Bind(fs, append([]string{"data-dir"}, settings...)...)
	fs.Group("Verifier")
	return adminFlags{
		b:         b,
		getenv:    a.getenv,
		lookupenv: a.lookupenv,
		given:     fs.Given,
		verifier:  fs.String("verifier", "", "the `host:port` of the verifier's gRPC listener (default: the address serve recorded in the data dir, else "+defaultVerifier+")"),
		tokenFile: fs.String("admin-token-file", "", "a `file` holding your named admin token (see 'admin-token create'), so the audit log names you "+
			"(env CLEARANCE_ADMIN_TOKEN_FILE; default: the data dir's admin.token)"),
		caFile: fs.String("ca-file", "", "the verifier's CA certificate (its data dir's ca.pem), to ask it from another machine: with --verifier and "+
			"--admin-token-file, no data dir is needed"),
	}
}

// adminConn is a connection to the admin API.
type adminConn struct {
	client adminv1.AdminServiceClient
	ctx    context.Context
	addr   string
	// tokenFrom says where the token came from, for errors.
	tokenFrom string
	// remote: the connection trusts --ca-file, not a data dir's ca.pem.
	remote bool
	close  func()
}

// withAdmin connects to the verifier serving the data dir, or with
// --ca-file to the one --verifier names, and runs f with the connection,
// which is closed when f returns.
func (a *app) withAdmin(ctx context.Context, f adminFlags, do func(*adminConn) error) error {
	if f.given != nil && f.given("ca-file") && *f.caFile == "" {
		return cli.Usagef("--ca-file is empty: name the verifier's CA certificate (its data dir's ca.pem), or leave the flag out to use the data dir")
	}
	var c *adminConn
	if f.caFile != nil && *f.caFile != "" {
		var err error
		if c, err = f.dialRemote(ctx); err != nil {
			return err
		}
	} else {
		cfg, err := a.resolveDataDir(f.b)
		if err != nil {
			return err
		}
		if c, err = f.dial(ctx, cfg.DataDir); err != nil {
			return err
		}
	}
	defer c.close()
	return do(c)
}

// dial connects to the verifier serving dataDir: TLS that trusts the data
// dir's ca.pem, and its admin.token (or --admin-token-file's) as the
// bearer token.
func (f adminFlags) dial(ctx context.Context, dataDir string) (*adminConn, error) {
	if err := datadir.Check(dataDir); err != nil {
		return nil, err
	}
	addr := *f.verifier
	if addr == "" {
		addr = datadir.GRPCAddress(dataDir, defaultVerifier)
	}
	pool, err := readRoots(filepath.Join(dataDir, ca.RootCertFile))
	if err != nil {
		return nil, err
	}
	token, tokenFrom, err := f.token(dataDir)
	if err != nil {
		return nil, err
	}
	return connect(ctx, addr, pool, token, tokenFrom)
}

// dialRemote connects to the verifier --verifier names, trusting
// --ca-file, with --admin-token-file's named token: from a machine that
// has no data dir.
func (f adminFlags) dialRemote(ctx context.Context) (*adminConn, error) {
	if *f.verifier == "" {
		return nil, cli.Usagef("--ca-file asks a verifier on another machine: give its gRPC address with --verifier HOST:PORT")
	}
	if f.tokenPath() == "" {
		return nil, cli.Usagef("--ca-file asks a verifier on another machine: give your named admin token with --admin-token-file FILE " +
			"(or CLEARANCE_ADMIN_TOKEN_FILE); 'clearance-verifier admin-token create' makes one on the verifier's host")
	}
	pool, err := readRoots(*f.caFile)
	if err != nil {
		return nil, fmt.Errorf("--ca-file: %w", err)
	}
	token, tokenFrom, err := f.token("")
	if err != nil {
		return nil, err
	}
	c, err := connect(ctx, *f.verifier, pool, token, tokenFrom)
	if err != nil {
		return nil, err
	}
	c.remote = true
	return c, nil
}

// readRoots reads the CA certificates in the PEM file at path.
func readRoots(path string) (*x509.CertPool, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() || st.Size() > 1<<20 {
		return nil, fmt.Errorf("%s is not a PEM file of CA certificates (a regular file under 1 MiB)", path)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	roots, err := certpem.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	pool := x509.NewCertPool()
	for _, c := range roots {
		pool.AddCert(c)
	}
	return pool, nil
}

// connect opens the admin API at addr over TLS trusting pool, presenting
// token (from says where it came from, for errors).
func connect(ctx context.Context, addr string, pool *x509.CertPool, token, from string) (*adminConn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, cli.Usagef("--verifier %q is not HOST:PORT", addr)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS12,
	})))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	return &adminConn{
		client: adminv1.NewAdminServiceClient(conn), ctx: ctx, addr: addr, tokenFrom: from,
		close: func() { cancel(); conn.Close() },
	}, nil
}

// tokenPath is --admin-token-file, else CLEARANCE_ADMIN_TOKEN_FILE; ""
// when neither names a file.
func (f adminFlags) tokenPath() string {
	if f.tokenFile != nil && *f.tokenFile != "" {
		return *f.tokenFile
	}
	if f.getenv != nil {
		return f.getenv("CLEARANCE_ADMIN_TOKEN_FILE")
	}
	return ""
}

// token is the bearer token the command presents and where it came from:
// --admin-token-file's named token, or the data dir's admin.token.
func (f adminFlags) token(dataDir string) (token, from string, err error) {
	if f.given != nil && f.given("admin-token-file") && *f.tokenFile == "" {
		// An unset variable in a script: not a reason to act with the
		// data dir's token, which may do everything.
		return "", "", cli.Usagef("--admin-token-file is empty: name the file holding your named admin token, or leave the flag out to use the data dir's admin.token")
	}
	if f.lookupenv != nil && (f.tokenFile == nil || *f.tokenFile == "") {
		if v, set := f.lookupenv("CLEARANCE_ADMIN_TOKEN_FILE"); set && v == "" {
			return "", "", cli.Usagef("CLEARANCE_ADMIN_TOKEN_FILE is set but empty: name the file holding your named admin token, or unset it to use the data dir's admin.token")
		}
	}
	path := f.tokenPath()
	if path == "" {
		tok, err := admin.LoadOrCreateToken(filepath.Join(dataDir, admin.TokenFile))
		return tok, "the data dir's admin token", err
	}
	b, err := secretfile.Read(path)
	if err != nil {
		return "", "", fmt.Errorf("--admin-token-file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if !strings.HasPrefix(tok, admin.NamedTokenPrefix) || strings.ContainsAny(tok, " \t\r\n\x00") {
		return "", "", fmt.Errorf("--admin-token-file: %s does not hold one named admin token (%s…, the last line 'admin-token create' printed)", path, admin.NamedTokenPrefix)
	}
	return tok, "the admin token in " + path, nil
}

// call makes one admin API call on c, with its error explained.
func call[Req, Resp any](c *adminConn, rpc func(context.Context, Req, ...grpc.CallOption) (Resp, error), req Req) (Resp, error) {
	resp, err := rpc(c.ctx, req)
	if err != nil {
		return resp, c.explain(err)
	}
	return resp, nil
}

// allPages collects every page of a listing: page fetches the one that
// token names and returns the token of the next ("" after the last).
func allPages[T any](page func(token string) ([]T, string, error)) ([]T, error) {
	var out []T
	token := ""
	for {
		items, next, err := page(token)
		if err != nil {
			return nil, err
		}
		out = append(out, items...)
		if token = next; token == "" {
			return out, nil
		}
	}
}

// explain turns an admin API error into what to do about it.
func (c *adminConn) explain(err error) error {
	switch code, msg := status.Code(err), status.Convert(err).Message(); {
	case code == codes.Unavailable && strings.Contains(msg, "certificate") && c.remote:
		return fmt.Errorf("the server at %s is not the verifier --ca-file names: its certificate is not from that CA (%s)", c.addr, msg)
	case code == codes.Unavailable && strings.Contains(msg, "certificate"):
		return fmt.Errorf("the server at %s is not the verifier serving this data dir: its certificate is not from the data dir's ca.pem (%s)", c.addr, msg)
	case code == codes.Unavailable:
		return fmt.Errorf("cannot reach the verifier at %s (is 'clearance-verifier serve' running? --verifier names another address): %s", c.addr, status.Convert(err).Message())
	case code == codes.Unauthenticated:
		if c.tokenFrom != "" && c.tokenFrom != "the data dir's admin token" {
			return fmt.Errorf("the verifier at %s refused %s: revoked, expired, or made for another verifier's database? (%s)", c.addr, c.tokenFrom, msg)
		}
		return fmt.Errorf("the verifier at %s refused the data dir's admin token: is it the verifier serving this data dir? (%s)", c.addr, msg)
	case code == codes.PermissionDenied && strings.Contains(msg, "lists and reads only"):
		return fmt.Errorf("%s (ask for a token with role admin, or run it as someone who has one)", msg)
	case code == codes.DeadlineExceeded:
		return fmt.Errorf("the verifier at %s did not answer in time", c.addr)
	}
	return errors.New(status.Convert(err).Message())
}

// listDevices is every device.
func (c *adminConn) listDevices() ([]*adminv1.Device, error) {
	return c.listDevicesWhere(&adminv1.ListDevicesRequest{})
}

// listDevicesWhere is every device that answers req's filters, through
// every page (a filtered page may hold none and not be the last).
func (c *adminConn) listDevicesWhere(req *adminv1.ListDevicesRequest) ([]*adminv1.Device, error) {
	req = proto.CloneOf(req)
	req.PageSize = 500
	return allPages(func(token string) ([]*adminv1.Device, string, error) {
		req.PageToken = token
		resp, err := call(c, c.client.ListDevices, req)
		return resp.GetDevices(), resp.GetNextPageToken(), err
	})
}

// listPending is every waiting enrollment request.
func (c *adminConn) listPending() ([]*adminv1.PendingEnrollment, error) {
	return allPages(func(token string) ([]*adminv1.PendingEnrollment, string, error) {
		resp, err := call(c, c.client.ListPendingEnrollments, &adminv1.ListPendingEnrollmentsRequest{PageSize: 500, PageToken: token})
		return resp.GetPending(), resp.GetNextPageToken(), err
	})
}

// printList shows what a listing found: the admin API's message m as JSON
// with --json; else, when nothing matched (n is 0), none on stderr; else
// the table.
func (a *app) printList(asJSON bool, m proto.Message, n int, none string, table func() error) error {
	if asJSON {
		return printJSON(a.stdout, m)
	}
	if n == 0 {
		fmt.Fprintln(a.stderr, none)
		return nil
	}
	return table()
}
