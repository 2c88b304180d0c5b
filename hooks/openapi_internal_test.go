package hooks

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/pocketbase/pocketbase/core"
	"github.com/pocketbase/pocketbase/tools/router"
)

// The document's API key scope of each route is the one routes.go binds: a route that takes
// keys says so with exactly its scope, and a route that does not, lists no apiKey.
func TestOpenAPIScopesAreTheBoundOnes(t *testing.T) {
	keys := newAPIKeys()
	routes{keys: keys}.bind(router.NewRouter(func(w http.ResponseWriter, r *http.Request) (*core.RequestEvent, router.EventCleanupFunc) {
		return nil, nil
	}))
	for _, r := range apiRoutes {
		var documented []string
		for _, a := range r.Auth {
			if scope, ok := strings.CutPrefix(a, "apiKey:"); ok {
				documented = append(documented, scope)
			}
		}
		bound, ok := keys.scopes[r.Route]
		switch {
		case ok && !slices.Equal(documented, []string{bound}):
			t.Errorf("%s is bound to %s, documented with %v", r.Route, bound, documented)
		case !ok && len(documented) > 0:
			t.Errorf("%s takes no API key, documented with %v", r.Route, documented)
		}
	}
}
