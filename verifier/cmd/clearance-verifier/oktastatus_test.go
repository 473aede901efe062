package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/pem"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.step.sm/crypto/jose"
	"go.step.sm/crypto/pemutil"

	"github.com/clearance/clearance/internal/oktaorg"
	"github.com/clearance/clearance/verifier/oktaapi"
)

// TestOktaStatus: `okta status` shows, per credential, what it can read.
func TestOktaStatus(t *testing.T) {
	t.Parallel()
	org := oktaorg.New()
	defer org.Close()
	org.AddToken("read-only-admin", oktaorg.Scopes(oktaapi.ScopeUsers, oktaapi.ScopeGroups, oktaapi.ScopeLogs, oktaapi.ScopeApps))
	org.AddToken("no-logs", oktaorg.Scopes(oktaapi.ScopeUsers, oktaapi.ScopeGroups, oktaapi.ScopeApps))

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	blk, err := pemutil.Serialize(key, pemutil.WithPKCS8(true))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "okta-key.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(blk), 0o600); err != nil {
		t.Fatal(err)
	}
	// Granted every scope but apps; its role does not reach the System Log.
	org.AddServiceApp("0oaclearance", &jose.JSONWebKey{Key: key.Public(), Algorithm: "ES256"},
		oktaorg.Scopes(oktaapi.ScopeUsers, oktaapi.ScopeGroups, oktaapi.ScopeLogs),
		oktaorg.Scopes(oktaapi.ScopeUsers, oktaapi.ScopeGroups))

	tokenFile := func(name, token string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(token+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name    string
		args    []string
		env     string // CLEARANCE_OKTA_API_TOKEN
		wantErr bool
	}{
		{"read-only", []string{"--okta-api-token-file", tokenFile("ro.token", "read-only-admin")}, "", false},
		{"no-logs", []string{"--okta-api-token-file", tokenFile("nologs.token", "no-logs")}, "", true},
		{"bad-token", []string{"--okta-api-token-file", tokenFile("bad.token", "revoked-token")}, "", true},
		{"service-app", []string{"--okta-client-id", "0oaclearance", "--okta-private-key-file", keyFile}, "", true},
		{"token-from-env", nil, "read-only-admin", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			getenv := func(k string) string {
				if k == "CLEARANCE_OKTA_API_TOKEN" {
					return tc.env
				}
				return ""
			}
			a := &app{stdout: &out, stderr: &errOut, getenv: getenv, now: time.Now, oktaHTTP: org.Server.Client()}
			args := append([]string{"okta", "status", "--okta-org-url", org.URL()}, tc.args...)
			err := a.program().Execute(context.Background(), args)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error: %v", err, tc.wantErr)
			}
			got := strings.ReplaceAll(out.String(), org.URL(), "https://ORG")
			got = strings.ReplaceAll(got, dir, "DIR")
			got = regexp.MustCompile(`errorId oae[0-9a-f]+`).ReplaceAllString(got, "errorId ERRORID")
			for _, secret := range []string{"read-only-admin", "no-logs\n", "revoked-token"} {
				if strings.Contains(got+errOut.String(), secret) {
					t.Errorf("output shows the token %q", secret)
				}
			}
			checkGolden(t, filepath.Join("testdata", "okta-status-"+tc.name+".golden"), got)
		})
	}
	if bad := org.Invalid(); len(bad) > 0 {
		t.Errorf("requests Okta's OpenAPI description refuses: %v", bad)
	}
}
