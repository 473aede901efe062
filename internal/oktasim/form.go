package oktasim

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/net/html"
)

// ParsePostForm reads the auto-submitting page an IdP returns for the
// HTTP-POST binding and returns the form's action and its SAMLResponse and
// RelayState fields, as a browser would submit them. It fails unless the
// page has a form with method=post and a non-empty SAMLResponse.
func ParsePostForm(page []byte) (action, samlResponse, relayState string, err error) {
	doc, err := html.Parse(bytes.NewReader(page))
	if err != nil {
		return "", "", "", fmt.Errorf("parsing response page: %w", err)
	}
	form := find(doc, func(n *html.Node) bool { return n.Type == html.ElementNode && n.Data == "form" })
	if form == nil {
		return "", "", "", errors.New("response page has no form")
	}
	if m := attr(form, "method"); !strings.EqualFold(m, "post") {
		return "", "", "", fmt.Errorf("form method is %q, want post", m)
	}
	action = attr(form, "action")
	if action == "" {
		return "", "", "", errors.New("form has no action")
	}
	var fields []*html.Node
	collect(form, func(n *html.Node) bool { return n.Type == html.ElementNode && n.Data == "input" }, &fields)
	for _, in := range fields {
		switch attr(in, "name") {
		case "SAMLResponse":
			samlResponse = attr(in, "value")
		case "RelayState":
			relayState = attr(in, "value")
		}
	}
	if samlResponse == "" {
		return "", "", "", errors.New("form has no SAMLResponse")
	}
	return action, samlResponse, relayState, nil
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Namespace == "" && a.Key == key {
			return a.Val
		}
	}
	return ""
}

func find(n *html.Node, match func(*html.Node) bool) *html.Node {
	if match(n) {
		return n
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if f := find(c, match); f != nil {
			return f
		}
	}
	return nil
}

func collect(n *html.Node, match func(*html.Node) bool, out *[]*html.Node) {
	if match(n) {
		*out = append(*out, n)
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		collect(c, match, out)
	}
}
