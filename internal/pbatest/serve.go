package pbatest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/pocketbase/pocketbase/apis"
	"github.com/pocketbase/pocketbase/core"
	"github.com/pocketbase/pocketbase/tests"
)

// Serve runs the app's OnServe hooks (routes, the click writer) and returns its HTTP handler,
// for tests that need more than one request per app (cookies, caches, realtime). Like
// apis.Serve, it gives the hooks an http.Server whose handler is the router, so what hooks
// put in front of the router (the direct /r/ path) is what tests reach. The app's Cleanup
// triggers OnTerminate, which drains the writer.
func Serve(t testing.TB, app *tests.TestApp) http.Handler {
	t.Helper()
	router, err := apis.NewRouter(app)
	if err != nil {
		t.Fatal(err)
	}
	se := &core.ServeEvent{App: app, Router: router, Server: &http.Server{}}
	err = app.OnServe().Trigger(se, func(e *core.ServeEvent) error {
		mux, err := e.Router.BuildMux()
		e.Server.Handler = mux
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return se.Server.Handler
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
