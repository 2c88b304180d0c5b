package hooks_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// TestOpenAPIDocument: GET /api/pba/openapi.json is served to anyone, cacheable, a valid
// OpenAPI 3.1 document (kin-openapi), and lists exactly the /api/pba routes the router has:
// a route missing from it, or one it lists that does not exist, fails.
func TestOpenAPIDocument(t *testing.T) {
	app := fx.App(t)
	defer app.Cleanup()
	h, routes := pbatest.ServeRoutes(t, app)
	res := pbatest.Request(h, http.MethodGet, "/api/pba/openapi.json", "", "")
	if res.Code != 200 || !strings.HasPrefix(res.Header().Get("Content-Type"), "application/json") || !strings.Contains(res.Header().Get("Cache-Control"), "max-age") {
		t.Fatalf("GET openapi.json: %d %v", res.Code, res.Header())
	}
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(res.Body.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if !doc.IsOpenAPI31OrLater() || doc.OpenAPI != "3.1.0" {
		t.Fatalf("openapi %q", doc.OpenAPI)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("the document does not validate: %v", err)
	}

	var documented []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented = append(documented, method+" "+path)
		}
	}
	var bound []string
	for _, r := range routes {
		method, path, _ := strings.Cut(r, " ")
		if strings.HasPrefix(path, "/api/pba/") {
			bound = append(bound, method+" "+strings.ReplaceAll(path, "...}", "}"))
		}
	}
	for _, r := range bound {
		if !slices.Contains(documented, r) {
			t.Errorf("route %s is not in the OpenAPI document: add an entry to apiRoutes (hooks/openapi.go)", r)
		}
	}
	for _, r := range documented {
		if !slices.Contains(bound, r) {
			t.Errorf("the OpenAPI document lists %s, which is no route", r)
		}
	}
	if len(bound) < 40 {
		t.Errorf("only %d /api/pba routes found", len(bound))
	}
	// Every operation says who may call it, and API key requirements name a scope.
	for _, r := range documented {
		method, path, _ := strings.Cut(r, " ")
		op := doc.Paths.Find(path).GetOperation(method)
		if op.Security == nil || len(*op.Security) == 0 {
			t.Errorf("%s has no security", r)
		}
		for _, req := range *op.Security {
			if scopes, ok := req["apiKey"]; ok && len(scopes) != 1 {
				t.Errorf("%s: apiKey requirement %v, want one scope", r, scopes)
			}
		}
	}
}
