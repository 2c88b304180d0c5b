package pbatest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/pocketbase/pocketbase/apis"
	"github.com/pocketbase/pocketbase/core"
	"github.com/pocketbase/pocketbase/tests"
	"github.com/pocketbase/pocketbase/tools/router"
)

// Serve runs the app's OnServe hooks (routes, the click writer) and returns its HTTP handler,
// for tests that need more than one request per app (cookies, caches, realtime). Like
// apis.Serve, it gives the hooks an http.Server whose handler is the router, so what hooks
// put in front of the router (the direct /r/ path) is what tests reach. The app's Cleanup
// triggers OnTerminate, which drains the writer.
func Serve(t testing.TB, app *tests.TestApp) http.Handler {
	t.Helper()
	h, _ := ServeRoutes(t, app)
	return h
}

// ServeRoutes is Serve that also lists the routes the app's OnServe hooks added to
// PocketBase's own, as "METHOD /pattern" (e.g. "GET /api/pba/stats"), so a test can require
// something of every route, including routes added after it was written.
func ServeRoutes(t testing.TB, app *tests.TestApp) (http.Handler, []string) {
	t.Helper()
	router, err := apis.NewRouter(app)
	if err != nil {
		t.Fatal(err)
	}
	own, err := routeList(router)
	if err != nil {
		t.Fatal(err)
	}
	se := &core.ServeEvent{App: app, Router: router, Server: &http.Server{}}
	var added []string
	err = app.OnServe().Trigger(se, func(e *core.ServeEvent) error {
		all, err := routeList(e.Router)
		if err != nil {
			return err
		}
		for _, r := range all {
			if !slices.Contains(own, r) {
				added = append(added, r)
			}
		}
		mux, err := e.Router.BuildMux()
		e.Server.Handler = mux
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return se.Server.Handler, added
}

// routeList lists every route bound on r as "METHOD /pattern" ("/pattern" for any method).
// PocketBase has no API that lists routes, so it walks the router's (unexported) tree with
// reflection, and checks each result with the router's own HasRoute so that a change of
// PocketBase's internals fails here rather than hiding routes.
func routeList(r *router.Router[*core.RequestEvent]) ([]string, error) {
	groupType := reflect.TypeFor[*router.RouterGroup[*core.RequestEvent]]()
	routeType := reflect.TypeFor[*router.Route[*core.RequestEvent]]()
	var out []string
	var walk func(group reflect.Value, prefix string) error
	walk = func(group reflect.Value, prefix string) error {
		prefix += group.FieldByName("Prefix").String()
		children := group.FieldByName("children")
		if children.Kind() != reflect.Slice {
			return errors.New("pbatest: PocketBase's router has no children slice any more; update routeList")
		}
		for i := range children.Len() {
			child := children.Index(i).Elem()
			switch child.Type() {
			case groupType:
				if err := walk(child.Elem(), prefix); err != nil {
					return err
				}
			case routeType:
				method, path := child.Elem().FieldByName("Method").String(), prefix+child.Elem().FieldByName("Path").String()
				if !r.HasRoute(method, path) {
					return fmt.Errorf("pbatest: listed route %s %s that the router does not have; update routeList", method, path)
				}
				out = append(out, strings.TrimSpace(method+" "+path))
			default:
				return fmt.Errorf("pbatest: unknown router child %s; update routeList", child.Type())
			}
		}
		return nil
	}
	return out, walk(reflect.ValueOf(r.RouterGroup).Elem(), "")
}

// ClientIP is the address Request's requests come from (httptest's default), the key of
// PocketBase's per-IP rate limits.
const ClientIP = "192.0.2.1"

// Response is a handler's answer: the recorder (Code, Body, Result for headers and cookies)
// and, when the body is a JSON object, that object.
type Response struct {
	*httptest.ResponseRecorder
	JSON map[string]any
}

// Request sends one request to h and records the answer; it never fails the test, so
// goroutines may call it. path may carry a query string. token is the Authorization header
// as sent ("" sends none): a PocketBase auth token as is, or "Bearer <key>" for the API
// keys. A non-empty body is sent as JSON; opts run last and may change anything (other
// headers, another Content-Type, the client address, cookies).
func Request(h http.Handler, method, path, token, body string, opts ...func(*http.Request)) *Response {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, r)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range AuthHeaders(token) {
		req.Header.Set(k, v)
	}
	for _, opt := range opts {
		opt(req)
	}
	res := &Response{ResponseRecorder: httptest.NewRecorder()}
	h.ServeHTTP(res.ResponseRecorder, req)
	_ = json.Unmarshal(res.Body.Bytes(), &res.JSON)
	return res
}

// Header is a Request option that sets one header.
func Header(key, value string) func(*http.Request) {
	return func(r *http.Request) { r.Header.Set(key, value) }
}

// AuthHeaders are the headers that send token (none for ""), for Request and for
// tests.ApiScenario's Headers alike.
func AuthHeaders(token string) map[string]string {
	if token == "" {
		return nil
	}
	return map[string]string{"Authorization": token}
}
