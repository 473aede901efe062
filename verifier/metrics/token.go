package metrics

import (
	"crypto/subtle"
	"net/http"

	"github.com/clearance/clearance/verifier/secretfile"
)

// TokenFile is the scrape token's file name in the data dir. It lets its
// holder read /metrics and nothing else: a Prometheus server gets this
// file, never the admin token.
const TokenFile = "metrics.token"

// LoadOrCreateToken reads the scrape token from path, creating a random one
// (0600) if the file does not exist. A file that is a symbolic link, is not
// ours, or is readable by group or others is refused, as for the admin
// token: what the metrics show (device counts, refusal reasons, sign-in
// rates) is for the operators.
func LoadOrCreateToken(path string) (string, error) {
	return secretfile.LoadOrCreateToken(path, "metrics token")
}

// RequireToken serves next only to requests with "Authorization: Bearer
// <token>" (compared in constant time); others get 401 and nothing else.
// refused, when set, is told of each refusal (for a sampled log line).
func RequireToken(token string, next http.Handler, refused func(*http.Request)) http.Handler {
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			if refused != nil {
				refused(r)
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="clearance-metrics"`)
			// A client without the token keeps no connection (and no idle
			// timer it could keep resetting).
			w.Header().Set("Connection", "close")
			http.Error(w, "a bearer token is required: the data dir's "+TokenFile, http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}
