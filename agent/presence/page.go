package presence

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"html/template"
	"net/http"
	"strconv"
)

// reason is why a request was refused: a key for logs, a status, and a
// sentence for the person in front of the browser. Nothing from the
// request is ever shown back.
type reason struct {
	key    string
	status int
	text   string
}

const (
	tryAgain = " Go back to the app and sign in again."
	askIT    = " If this keeps happening, contact your IT team."
)

var (
	reasonHost           = reason{"bad_host", http.StatusForbidden, "This page was opened through an address the Clearance agent does not answer on." + tryAgain}
	reasonMethod         = reason{"bad_method", http.StatusMethodNotAllowed, "The Clearance agent answers only when your browser opens a page." + tryAgain}
	reasonBody           = reason{"has_body", http.StatusBadRequest, "The Clearance agent answers only when your browser opens a page." + tryAgain}
	reasonPath           = reason{"not_found", http.StatusNotFound, "There is no page here. The Clearance agent answers only the sign-in check." + tryAgain}
	reasonQuery          = reason{"bad_query", http.StatusBadRequest, "The sign-in link was incomplete or altered." + tryAgain}
	reasonNoPresenceURL  = reason{"presence_url_unknown", http.StatusServiceUnavailable, "The Clearance agent on this Mac has not yet been told which sign-in service it answers. Wait a minute and sign in again." + askIT}
	reasonBadPresenceURL = reason{"presence_url_invalid", http.StatusServiceUnavailable, "The Clearance agent on this Mac is set up with a sign-in address it cannot use." + askIT}
	reasonReturn         = reason{"return_mismatch", http.StatusForbidden, "This request came from a site the Clearance agent does not answer. It confirms this Mac only to your organization's sign-in service." + tryAgain}
	reasonNotNavigation  = reason{"not_navigation", http.StatusForbidden, "The Clearance agent answers only when your browser opens this page itself, not when another page loads it." + tryAgain}
	reasonNotEnrolled    = reason{"not_enrolled", http.StatusServiceUnavailable, "This Mac is not enrolled with Clearance yet. Wait a minute and sign in again." + askIT}
	reasonRate           = reason{"rate_limited", http.StatusTooManyRequests, "Too many sign-in checks at once. Wait a moment and sign in again."}
	reasonCheckBusy      = reason{"check_busy", http.StatusTooManyRequests, "Too many sign-in checks at once. Wait a moment and sign in again."}
	reasonNotBrowser     = reason{"peer_not_browser", http.StatusForbidden, "The Clearance agent confirms this Mac only to a web browser, and the program that asked is not one it recognizes." + askIT}
	reasonPeerUnknown    = reason{"peer_unknown", http.StatusForbidden, "The Clearance agent could not tell which program asked, so it did not answer." + tryAgain + askIT}
	reasonSign           = reason{"sign_failed", http.StatusInternalServerError, "The Clearance agent could not sign the check." + tryAgain + askIT}
)

const pageStyle = `body{font:16px/1.5 -apple-system,system-ui,sans-serif;max-width:34em;margin:4em auto;padding:0 1em;color:#222}h1{font-size:1.3em}`

var page = template.Must(template.New("refused").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Clearance: this Mac was not confirmed</title>
<style>{{.Style}}</style>
</head>
<body>
<h1>This Mac was not confirmed</h1>
<p>{{.Text}}</p>
</body>
</html>
`))

// csp allows nothing but the page's own inline style, by its hash.
var csp = func() string {
	sum := sha256.Sum256([]byte(pageStyle))
	return "default-src 'none'; style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'; " +
		"img-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
}()

// setHeaders sets the headers every response carries, the redirect
// included: nothing cached, no referrer, nothing sniffed, loaded or framed.
func setHeaders(h http.Header) {
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Frame-Options", "DENY")
}

func writeRefusal(w http.ResponseWriter, why reason) {
	var buf bytes.Buffer
	// Constant data into a parsed template: an error is a bug, caught by
	// the tests.
	_ = page.Execute(&buf, struct {
		Style template.CSS
		Text  string
	}{template.CSS(pageStyle), why.text})
	h := w.Header()
	setHeaders(h)
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(why.status)
	_, _ = buf.WriteTo(w)
}
