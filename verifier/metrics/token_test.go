package metrics

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadOrCreateToken(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), TokenFile)
	tok, err := LoadOrCreateToken(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 || len(tok) < 32 {
		t.Fatalf("token file %v (err %v), token %d characters; want 0600 and at least 32", st.Mode(), err, len(tok))
	}
	again, err := LoadOrCreateToken(path)
	if err != nil || again != tok {
		t.Fatalf("second load %q (%v), want the same token", again, err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateToken(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("a world-readable token file: %v; want refused with the fix", err)
	}
	short := filepath.Join(t.TempDir(), TokenFile)
	if err := os.WriteFile(short, []byte("abc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateToken(short); err == nil {
		t.Error("a 3-character token was accepted")
	}
}

func TestRequireToken(t *testing.T) {
	t.Parallel()
	const tok = "0123456789abcdef0123456789abcdef0123456789a"
	refused := 0
	h := RequireToken(tok, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("metrics")) }),
		func(*http.Request) { refused++ })
	for _, tc := range []struct {
		name, auth string
		want       int
	}{
		{"none", "", http.StatusUnauthorized},
		{"wrong", "Bearer " + strings.Repeat("x", len(tok)), http.StatusUnauthorized},
		{"a prefix", "Bearer " + tok[:20], http.StatusUnauthorized},
		{"longer", "Bearer " + tok + "x", http.StatusUnauthorized},
		{"basic", "Basic " + tok, http.StatusUnauthorized},
		{"right", "Bearer " + tok, http.StatusOK},
	} {
		r := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		if tc.auth != "" {
			r.Header.Set("Authorization", tc.auth)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != tc.want || (tc.want == http.StatusOK) != (w.Body.String() == "metrics") {
			t.Errorf("%s: %d %q, want %d", tc.name, w.Code, w.Body.String(), tc.want)
		}
		if w.Code == http.StatusUnauthorized && w.Header().Get("WWW-Authenticate") == "" {
			t.Errorf("%s: 401 without WWW-Authenticate", tc.name)
		}
	}
	if refused != 5 {
		t.Errorf("%d refusals reported, want 5", refused)
	}
}
