package oktaorg

import (
	"context"
	_ "embed"
	"fmt"
	"net/http"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// spec is a pruned copy of Okta's management OpenAPI description (see
// testdata/README.md for its source and licence).
//
//go:embed testdata/okta-management-pruned.yaml
var spec []byte

// newValidator returns a check of a request against the spec: its path,
// method and query parameters. Authentication is the org's own check.
func newValidator() (func(*http.Request) error, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(spec)
	if err != nil {
		return nil, fmt.Errorf("loading Okta's OpenAPI description: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("Okta's OpenAPI description: %w", err)
	}
	// Match requests whatever host the test server listens on.
	doc.Servers = openapi3.Servers{{URL: "/"}}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, err
	}
	return func(r *http.Request) error {
		return validate(router, r)
	}, nil
}

func validate(router routers.Router, r *http.Request) error {
	route, params, err := router.FindRoute(r)
	if err != nil {
		return fmt.Errorf("no such operation: %w", err)
	}
	return openapi3filter.ValidateRequest(r.Context(), &openapi3filter.RequestValidationInput{
		Request: r, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true},
	})
}
