package oktaapi

import (
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestNextLink(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		links   []string
		want    string
		wantErr bool
	}{
		{"okta's pair", []string{`<https://o.okta.com/api/v1/users?limit=200>; rel="self"`, `<https://o.okta.com/api/v1/users?after=00u1&limit=200>; rel="next"`}, "https://o.okta.com/api/v1/users?after=00u1&limit=200", false},
		{"one header", []string{`<https://o/a?x=1,2>; rel="self", <https://o/b>; rel=next`}, "https://o/b", false},
		{"last page", []string{`<https://o/a>; rel="self"`}, "", false},
		{"none", nil, "", false},
		{"two nexts", []string{`<https://o/a>; rel="next"`, `<https://o/b>; rel="next"`}, "", true},
		{"no brackets", []string{`https://o/a; rel="next"`}, "", true},
		{"unterminated", []string{`<https://o/a; rel="next"`}, "", true},
		{"quoted comma", []string{`<https://o/a>; title="a, b"; rel="next"`}, "https://o/a", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			for _, l := range tc.links {
				h.Add("Link", l)
			}
			got, err := nextLink(h)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("nextLink = %q, %v; want %q, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
	h := http.Header{}
	for range 100 {
		h.Add("Link", `<https://o/a>; rel="self"`)
	}
	if _, err := nextLink(h); err == nil {
		t.Error("100 Link headers accepted")
	}
}

func TestParseError(t *testing.T) {
	t.Parallel()
	e := parseError(429, []byte(`{"errorCode":"E0000047","errorSummary":"API call exceeded rate limit due to too many requests.","errorLink":"E0000047","errorId":"oaeX","errorCauses":[{"errorSummary":"a\nforged log line"}]}`))
	if e.Code != CodeRateLimited || e.ID != "oaeX" || len(e.Causes) != 1 || strings.Contains(e.Error(), "\n") {
		t.Fatalf("parsed %+v", e)
	}
	for _, body := range []string{"", "not json", `[]`, `{"errorCode":5}`, `{"errorSummary":"` + strings.Repeat("x", 100000) + `"}`} {
		e := parseError(500, []byte(body))
		if e.Status != 500 || len(e.Error()) > 4*maxErrorText {
			t.Errorf("body %.20q: %v", body, e)
		}
	}
	oauth := parseError(400, []byte(`{"error":"invalid_scope","error_description":"One or more scopes are not configured."}`))
	if oauth.OAuth != "invalid_scope" || oauth.Summary == "" {
		t.Errorf("OAuth error parsed as %+v", oauth)
	}
}

func FuzzNextLink(f *testing.F) {
	f.Add(`<https://o.okta.com/api/v1/users?after=1>; rel="next", <https://o/a>; rel="self"`)
	f.Add(`<a>;rel="next";x="\"",<b>`)
	f.Fuzz(func(t *testing.T, v string) {
		h := http.Header{}
		h.Add("Link", v)
		next, err := nextLink(h)
		if err == nil && next != "" && !strings.Contains(v, next) {
			t.Fatalf("next %q is not in the header", next)
		}
	})
}

func FuzzParseError(f *testing.F) {
	f.Add([]byte(`{"errorCode":"E0000047","errorSummary":"x","errorId":"y","errorCauses":[{"errorSummary":"z"}]}`))
	f.Add([]byte(`{"error":"invalid_client"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e := parseError(400, b)
		if strings.ContainsAny(e.Error(), "\n\r") {
			t.Fatal("error text has a line break")
		}
	})
}

func FuzzRateLimit(f *testing.F) {
	f.Add("600", "0", "1700000000")
	f.Add("", "-1", "99999999999999999999")
	f.Fuzz(func(t *testing.T, lim, rem, reset string) {
		h := http.Header{}
		h.Set("X-Rate-Limit-Limit", lim)
		h.Set("X-Rate-Limit-Remaining", rem)
		h.Set("X-Rate-Limit-Reset", reset)
		rl := parseRateLimit(h)
		c := &Client{Jitter: func(n time.Duration) time.Duration { return n - 1 }}
		if d := c.rateLimitWait(rl); d < 0 || d > 2*MaxRateLimitWait+2*time.Second {
			t.Fatalf("wait %v for %+v", d, rl)
		}
	})
}

func FuzzText(f *testing.F) {
	f.Add("Mozilla/5.0 \x00 \xff")
	f.Fuzz(func(t *testing.T, s string) {
		got := text(s)
		if len(got) > 1024 || !utf8.ValidString(got) || strings.ContainsRune(got, 0) {
			t.Fatalf("text(%q) = %q", s, got)
		}
	})
}
