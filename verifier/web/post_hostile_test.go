package web_test

import (
	"net/http/httptest"
	"strings"
	"testing"

	"golang.org/x/net/html"

	"github.com/clearance/clearance/verifier/web"
)

// TestPostHostileValues: hostile SAMLResponse and RelayState values come back
// from an HTML5 parser as exactly the two hidden inputs' values, with no
// element or attribute added; a javascript: ACS is refused.
func TestPostHostileValues(t *testing.T) {
	r, err := web.New()
	if err != nil {
		t.Fatal(err)
	}
	evil := []string{`"><script>alert(1)</script>`, `' onfocus=alert(1) x='`, "\"\x00><img src=x onerror=alert(1)>", `&quot;><svg onload=alert(1)>`, "</form><script>alert(1)</script>", "+/=&amp;&#34;", "\u2028\u2029<!--", "é😀"}
	count := func(body string) (elems, attrs int, vals map[string]string) {
		vals = map[string]string{}
		doc, err := html.Parse(strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		var walk func(*html.Node)
		walk = func(n *html.Node) {
			if n.Type == html.ElementNode {
				elems++
				attrs += len(n.Attr)
				if n.Data == "input" {
					var name, val string
					for _, a := range n.Attr {
						switch a.Key {
						case "name":
							name = a.Val
						case "value":
							val = a.Val
						}
					}
					vals[name] = val
				}
			}
			for c := n.FirstChild; c != nil; c = c.NextSibling {
				walk(c)
			}
		}
		walk(doc)
		return
	}
	render := func(p web.Post) string {
		rec := httptest.NewRecorder()
		if err := r.Post(rec, p); err != nil {
			t.Fatal(err)
		}
		return rec.Body.String()
	}
	e0, a0, _ := count(render(web.Post{ACSURL: "https://a.example/acs", SAMLResponse: "x", RelayState: "y"}))
	for _, s := range evil {
		want := strings.ReplaceAll(s, "\x00", "\ufffd")
		for _, p := range []web.Post{
			{ACSURL: "https://a.example/acs", SAMLResponse: s, RelayState: "y"},
			{ACSURL: "https://a.example/acs", SAMLResponse: "x", RelayState: s},
		} {
			e, a, v := count(render(p))
			if e != e0 || a != a0 {
				t.Errorf("%q: %d elements %d attributes, want %d %d", s, e, a, e0, a0)
			}
			if p.SAMLResponse == s && v["SAMLResponse"] != want || p.RelayState == s && v["RelayState"] != want {
				t.Errorf("%q: values %q", s, v)
			}
		}
	}
	if err := r.Post(httptest.NewRecorder(), web.Post{ACSURL: "javascript:alert(1)", SAMLResponse: "x"}); err == nil {
		t.Error("javascript: ACS accepted")
	}
}
