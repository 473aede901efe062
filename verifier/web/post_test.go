package web

import (
	"crypto/rand"
	"encoding/base64"
	"html/template"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestAttrValue: attrValue escapes as html/template escapes a quoted
// attribute value, for responses and for any string at all.
func TestAttrValue(t *testing.T) {
	t.Parallel()
	raw := make([]byte, 3000)
	_, _ = rand.Read(raw)
	inputs := []string{
		"", "plain", base64.StdEncoding.EncodeToString(raw), string(raw),
		`"&'+<>` + "\x00=`/\\ \t\n", "é ü 日本 \xff\xfe \ufdd0 \uffff \U0001F600", strings.Repeat("+/=", 100),
	}
	for _, s := range inputs {
		checkAttrValue(t, s)
	}
}

// attrRef is html/template writing a string in a quoted attribute value.
var attrRef = template.Must(template.New("").Parse(`<input value="{{.}}">`))

// checkAttrValue fails if attrValue escapes s other than html/template.
func checkAttrValue(t *testing.T, s string) {
	t.Helper()
	var want strings.Builder
	if err := attrRef.Execute(&want, s); err != nil {
		t.Fatal(err)
	}
	if got := `<input value="` + attrValue(s) + `">`; got != want.String() {
		t.Errorf("attrValue(%q) = %q, html/template writes %q", s, got, want.String())
	}
}

// FuzzAttrValue: attrValue agrees with html/template on any string.
func FuzzAttrValue(f *testing.F) {
	for _, s := range []string{"", "a+b=", `"&'<>`, "\x00\xff"} {
		f.Add(s)
	}
	f.Fuzz(checkAttrValue)
}

// TestPostAsTemplated: the Post page is byte for byte the page the
// template wrote when it escaped the response itself.
func TestPostAsTemplated(t *testing.T) {
	t.Parallel()
	r, err := New()
	if err != nil {
		t.Fatal(err)
	}
	text, err := templateFS.ReadFile("templates/post.html")
	if err != nil {
		t.Fatal(err)
	}
	before := strings.Replace(string(text), `name="SAMLResponse" {{.SAMLResponse}}>`, `name="SAMLResponse" value="{{.SAMLResponse}}">`, 1)
	if before == string(text) {
		t.Fatal("post.html no longer has the response attribute this test expects")
	}
	old := template.Must(template.Must(template.New("layout.html").ParseFS(templateFS, "templates/layout.html")).Parse(before))
	raw := make([]byte, 7000)
	_, _ = rand.Read(raw)
	for _, p := range []Post{
		{ACSURL: "https://example.okta.com/sso/saml2/0oa1", SAMLResponse: base64.StdEncoding.EncodeToString(raw), RelayState: "state+1&x=<y>"},
		{ACSURL: "https://example.okta.com/sso/saml2/0oa1?a=b&c=d", SAMLResponse: `odd "response" & <more>'+`, Notes: []string{"a note & <b>"}},
		// What stands for the response while the page is templated, in
		// every other value: never mistaken for the slot.
		{ACSURL: "https://example.okta.com/" + postSlot, SAMLResponse: postSlot, RelayState: postSlot, Notes: []string{postSlot}},
		{ACSURL: "https://example.okta.com/sso", SAMLResponse: ""},
	} {
		rec := httptest.NewRecorder()
		if err := r.Post(rec, p); err != nil {
			t.Fatal(err)
		}
		var want strings.Builder
		v := struct {
			page
			ACSURL, SAMLResponse, RelayState string
			Script                           template.JS
			Notes                            []string
		}{page{Title: "Signing you in", CSS: template.CSS(styleCSS)}, p.ACSURL, p.SAMLResponse, p.RelayState, template.JS(autosubmitJS), p.Notes}
		if err := old.ExecuteTemplate(&want, "layout", v); err != nil {
			t.Fatal(err)
		}
		if got := rec.Body.String(); got != want.String() {
			t.Errorf("Post page differs from the templated one:\n%s\nwant:\n%s", got, want.String())
		}
	}
}

// BenchmarkPost renders the auto-POST page with a response of the size a
// signed SAMLResponse has.
func BenchmarkPost(b *testing.B) {
	r, err := New()
	if err != nil {
		b.Fatal(err)
	}
	raw := make([]byte, 7000)
	_, _ = rand.Read(raw)
	p := Post{ACSURL: "https://example.okta.com/sso/saml2/0oa1", SAMLResponse: base64.StdEncoding.EncodeToString(raw), RelayState: "state"}
	b.ReportAllocs()
	for b.Loop() {
		if err := r.Post(httptest.NewRecorder(), p); err != nil {
			b.Fatal(err)
		}
	}
}
