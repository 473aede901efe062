package oktaapi_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/clearance/clearance/verifier/oktaapi"
)

// hostileOrg is an "Okta" that answers every request with h.
func hostileOrg(t *testing.T, h http.HandlerFunc) *oktaapi.Client {
	t.Helper()
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	tok, _ := oktaapi.NewAPIToken("t")
	c, err := oktaapi.NewClient(srv.URL, tok)
	if err != nil {
		t.Fatal(err)
	}
	c.HTTP = srv.Client()
	c.Sleep = func(context.Context, time.Duration) error { return nil }
	return c
}

func TestHostileOrg(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		h    http.HandlerFunc
		want string
	}{
		{"oversized body", func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte("["))
			chunk := []byte(strings.Repeat(`{"id":"x"},`, 1000))
			for range oktaapi.MaxBodyLen/len(chunk) + 1 {
				w.Write(chunk)
			}
		}, "larger than"},
		{"not JSON", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("<html>")) }, "decoding"},
		{"next link elsewhere", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Link", `<https://attacker.example/api/v1/users?after=1>; rel="next"`)
			w.Write([]byte("[]"))
		}, "origin"},
		{"next link to itself", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Link", "<https://"+r.Host+r.URL.RequestURI()+`>; rel="next"`)
			w.Write([]byte("[]"))
		}, "same page"},
		{"malformed link", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Link", `https://x; rel="next"`)
			w.Write([]byte("[]"))
		}, "Link"},
		{"429 forever", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Rate-Limit-Reset", "99999999999")
			w.Header().Set("X-Rate-Limit-Remaining", "0")
			w.WriteHeader(429)
			w.Write([]byte(`{"errorCode":"E0000047","errorSummary":"API call exceeded rate limit"}`))
		}, "E0000047"},
		{"error body with newlines", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(400)
			w.Write([]byte(`{"errorCode":"E0000001","errorSummary":"line1\nlevel=ERROR msg=forged"}`))
		}, "line1 level=ERROR"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := hostileOrg(t, tc.h)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err := c.Users(ctx, "", func([]oktaapi.User) error { return nil })
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}
