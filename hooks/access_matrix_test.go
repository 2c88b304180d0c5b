package hooks_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pocketbase/pocketbase/apis"
	"github.com/pocketbase/pocketbase/core"
	"github.com/pocketbase/pocketbase/tools/subscriptions"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// The access matrix: every collection (records API) and every route pbaffiliate adds, with the
// exact status each role gets, and no answer to anyone but a superuser holding another's data.
// docs/http-api.md ("Access matrix") says how to add a row or a role.

// matrixRoles are the columns of the matrix, in the order of every row's cells:
//
//	guest     no credentials
//	A, B      approved affiliates of program P, each with rows everywhere
//	P         a pending affiliate of program P (rows too, as if it had been approved before)
//	S         a suspended affiliate of program P (rows too)
//	merchant  program P's postback secret as "Authorization: Bearer <secret>"
//	superuser
//
// then apiKeyRoles.
var matrixRoles = append([]string{"guest", "A", "B", "P", "S", "merchant", "superuser"}, apiKeyRoles...)

// apiKeyRoles are the API keys (hooks/apikeys.go): one of each scope, in this order, and a
// revoked one holding every scope. An API key acts on the routes bound to its scope as an
// admin would; everywhere else under /api/ (the records API included) it is refused: 403, or
// 401 revoked.
var apiKeyRoles = []string{"key:sales:write", "key:sales:read", "key:affiliates:read", "key:affiliates:write",
	"key:stats:read", "key:payouts:read", "key:revoked"}

// seen is what a list answers: a status and which rows it holds.
type seen string

const (
	none    seen = "none"    // 200 with no rows
	own     seen = "own"     // 200 with exactly the caller's rows (its affiliate's)
	program seen = "program" // 200 with exactly the rows of the caller's program
	every   seen = "every"   // 200 with every row
	denied  seen = "403"     // 403
	unauth  seen = "401"     // 401 (a revoked API key)
)

// refused reports whether a list under s is an error (nothing to list or expand).
func refused(s seen) bool { return s == denied || s == unauth }

// statuses are one operation's exact status per role, in matrixRoles order: guest, A, B, P,
// S, merchant, superuser, then the API keys (apiKeyRoles).
type statuses []int

// access is one collection's row, each operation's cells in matrixRoles order. view, update
// and delete act on the caller's own row (its first; in rows of programs, its program's), or
// on A's last row for roles with none of their own. On top, each affiliate tries the same on
// another's row (foreignRows) and gets exactly what a guest gets.
type access struct {
	list                         []seen
	view, create, update, delete statuses
}

// recordsRow is a collection, who owns its rows and its access.
type recordsRow struct {
	collection string
	// owner is an SQL expression over the collection's columns naming a row's owner: an
	// affiliate id, a program id (rows every affiliate of the program may read), or '' (nobody).
	owner string
	access
	// createBody and updateBody are sent as JSON ("{}" if empty); {self} is the caller's
	// affiliate id ("" for others), {role} its role name.
	createBody, updateBody string
}

// Owners of rows.
const (
	byAffiliate = "affiliate"
	byRecordRef = "recordRef" // PocketBase's _authOrigins, _externalAuths, _mfas, _otps
	byProgram   = "program"
	byID        = "id" // affiliates (each its own), programs
	byNobody    = "''"
)

// Common rows of access.
var (
	// readOwn: an affiliate reads its own rows whatever its status; only superusers write.
	readOwn = access{
		list:   []seen{none, own, own, own, own, none, every},
		view:   statuses{404, 200, 200, 200, 200, 404, 200},
		create: statuses{403, 403, 403, 403, 403, 403, 400},
		update: statuses{403, 403, 403, 403, 403, 403, 200},
		delete: statuses{403, 403, 403, 403, 403, 403, 204},
	}
	// readProgram: the affiliates of a program read its rows; only superusers write.
	readProgram = access{
		list:   []seen{none, program, program, program, program, none, every},
		view:   statuses{404, 200, 200, 200, 200, 404, 200},
		create: statuses{403, 403, 403, 403, 403, 403, 400},
		update: statuses{403, 403, 403, 403, 403, 403, 200},
		delete: statuses{403, 403, 403, 403, 403, 403, 204},
	}
	// readOwnDeleteOwn: readOwn, and an affiliate deletes its own rows.
	readOwnDeleteOwn = readOwn.withDelete(statuses{404, 204, 204, 204, 204, 404, 204})
	// superusersOnly: no rules at all (bookkeeping, configuration, PocketBase's superusers).
	superusersOnly = access{
		list:   []seen{denied, denied, denied, denied, denied, denied, every},
		view:   statuses{403, 403, 403, 403, 403, 403, 200},
		create: statuses{403, 403, 403, 403, 403, 403, 400},
		update: statuses{403, 403, 403, 403, 403, 403, 200},
		delete: statuses{403, 403, 403, 403, 403, 403, 204},
	}
)

// withSuperuser is a with the superuser's create, update and delete replaced (what they
// answer past the rules depends on the collection's validation).
func (a access) withSuperuser(create, update, del int) access {
	su := slices.Index(matrixRoles, "superuser")
	a.create, a.update, a.delete = slices.Clone(a.create), slices.Clone(a.update), slices.Clone(a.delete)
	a.create[su], a.update[su], a.delete[su] = create, update, del
	return a
}

// withDelete is a with other delete cells.
func (a access) withDelete(cells statuses) access {
	a.delete = cells
	return a
}

// recordsMatrix has a row for every collection of the schema. API keys never reach the records
// API (withKeys adds their cells).
func recordsMatrix() []recordsRow {
	return withKeys([]recordsRow{
		{collection: "programs", owner: byID, access: readProgram.withSuperuser(400, 200, 400)},
		{collection: "tiers", owner: byProgram, access: readProgram},
		// An inactive bonus is not shown to affiliates.
		{collection: "bonuses", owner: "CASE WHEN active THEN program ELSE '' END", access: readProgram},
		{collection: "affiliates", owner: byID, access: access{
			// Anyone may sign up (a new account); an affiliate edits its own profile whatever its status.
			list:   []seen{none, own, own, own, own, none, every},
			view:   statuses{404, 200, 200, 200, 200, 404, 200},
			create: statuses{200, 200, 200, 200, 200, 200, 200},
			update: statuses{404, 200, 200, 200, 200, 404, 200},
			delete: statuses{403, 403, 403, 403, 403, 403, 400}, // their rows refer to them
		}, createBody: `{"name":"New {role}","email":"new-{role}@fixture.test","password":"new-password-1","passwordConfirm":"new-password-1"}`,
			updateBody: `{"name":"renamed"}`},
		{collection: "links", owner: byAffiliate, access: access{
			// Only approved affiliates see and edit their links; deletion is the dashboard's.
			list:   []seen{none, own, own, none, none, none, every},
			view:   statuses{404, 200, 200, 404, 404, 404, 200},
			create: statuses{400, 200, 200, 400, 400, 400, 400},
			update: statuses{404, 200, 200, 404, 404, 404, 200},
			delete: statuses{403, 403, 403, 403, 403, 403, 204},
		}, createBody: `{"affiliate":"{self}","label":"new link"}`, updateBody: `{"label":"renamed"}`},
		{collection: "clicks", owner: byAffiliate, access: readOwn},
		// A sale with commissions, and a paid payout, are part of the ledger: not deletable.
		{collection: "conversions", owner: byAffiliate, access: readOwn.withSuperuser(400, 200, 400)},
		{collection: "commissions", owner: byAffiliate, access: readOwn},
		{collection: "payouts", owner: byAffiliate, access: readOwn.withSuperuser(400, 200, 400)},
		// Figures derived from the facts: nobody writes them by hand (hooks/rollup_guards.go).
		{collection: "stats_daily", owner: byAffiliate, access: readOwn.withSuperuser(400, 400, 400)},
		{collection: "stats_program_hourly", owner: byNobody, access: superusersOnly.withSuperuser(400, 400, 400)},
		{collection: "stats_dims_daily", owner: byNobody, access: superusersOnly.withSuperuser(400, 400, 400)},
		{collection: "commission_totals", owner: byNobody, access: superusersOnly.withSuperuser(400, 400, 400)},
		{collection: "click_overflow", owner: byNobody, access: superusersOnly},
		{collection: "coupons", owner: byAffiliate, access: readOwn},
		// Imported legacy codes (pbaffiliate import): the back office's, not the affiliate's.
		{collection: "code_aliases", owner: byAffiliate, access: superusersOnly},
		// An endpoint's deliveries have no affiliate: superusers only.
		{collection: "webhook_deliveries", owner: byAffiliate, access: readOwn},
		{collection: "webhooks", owner: byNobody, access: superusersOnly},
		{collection: "tier_changes", owner: byAffiliate, access: readOwn},
		{collection: "deliveries", owner: byAffiliate, access: readOwn},
		// A sale's history is written by the server only, superusers included.
		{collection: "conversion_events", owner: byAffiliate, access: readOwn.withSuperuser(403, 403, 403)},
		{collection: "stripe_events", owner: byNobody, access: superusersOnly},
		{collection: "stripe_pending", owner: byNobody, access: superusersOnly},
		{collection: "stripe_disputes", owner: byNobody, access: superusersOnly},
		{collection: "provider_events", owner: byNobody, access: superusersOnly},
		{collection: "provider_refunds", owner: byNobody, access: superusersOnly},
		{collection: "stripe_attributions", owner: byNobody, access: superusersOnly.withSuperuser(200, 200, 204)}, // no required field
		{collection: "payout_runs", owner: byNobody, access: superusersOnly},
		{collection: "messages", owner: byNobody, access: superusersOnly},
		{collection: "suppressions", owner: byNobody, access: superusersOnly},
		{collection: "mail_templates", owner: byNobody, access: superusersOnly},
		{collection: "leases", owner: byNobody, access: superusersOnly},
		{collection: "inactive_redirects", owner: byNobody, access: superusersOnly},
		{collection: "edge_door_batches", owner: byNobody, access: superusersOnly.withSuperuser(200, 200, 204)}, // nothing to validate
		// Promotional materials: superusers only as records; an approved affiliate reads the
		// active ones of its program and tier rendered by GET /api/pba/assets (the owner says
		// whose answers may hold a row: the tier-targeted one is for Gold, which nobody here is in).
		{collection: "assets", owner: "CASE WHEN active AND tiers IN ('', '[]') THEN program ELSE '' END", access: superusersOnly},
		// An affiliate writes and reads its own feedback, whatever its status; a superuser's
		// create names no affiliate (400).
		{collection: "feedback", owner: byAffiliate, access: access{
			list:   []seen{none, own, own, own, own, none, every},
			view:   statuses{404, 200, 200, 200, 200, 404, 200},
			create: statuses{400, 200, 200, 200, 200, 400, 400},
			update: statuses{404, 200, 200, 200, 200, 404, 200},
			delete: statuses{403, 403, 403, 403, 403, 403, 204},
		}, createBody: `{"rating":9,"topic":"portal","comment":"new {role}"}`, updateBody: `{"comment":"changed"}`},
		{collection: "surveys", owner: byNobody, access: superusersOnly},
		// The record of privacy requests (exports, erasures): superusers only.
		{collection: "privacy_requests", owner: byNobody, access: superusersOnly},
		// Campaigns name the affiliates they target: affiliates read theirs through GET /api/pba/incentives.
		// Owned by its program, or by the one affiliate it is for (the matrix seeds no other kind).
		{collection: "incentives", owner: "CASE WHEN eligibility = 'affiliates' THEN json_extract(affiliates, '$[0]') ELSE program END", access: superusersOnly},
		// PocketBase's own collections.
		{collection: core.CollectionNameSuperusers, owner: byNobody, access: superusersOnly.withSuperuser(400, 200, 400)}, // not the only one
		// An affiliate may forget its own devices and OAuth2 links.
		{collection: core.CollectionNameAuthOrigins, owner: byRecordRef, access: readOwnDeleteOwn},
		{collection: core.CollectionNameExternalAuths, owner: byRecordRef, access: readOwnDeleteOwn},
		{collection: core.CollectionNameMFAs, owner: byRecordRef, access: readOwn},
		{collection: core.CollectionNameOTPs, owner: byRecordRef, access: readOwn},
		// PocketBase's default "users" collection, unused by pbaffiliate, is locked by migration
		// 1795480310: superusers only, no sign-in.
		{collection: "users", owner: byNobody, access: superusersOnly.withSuperuser(200, 200, 204), createBody: `{"email":"new-{role}@fixture.test","password":"new-password-1","passwordConfirm":"new-password-1"}`},
		// API keys: superusers only; the records API neither creates one (400: POST
		// /api/pba/api-keys shows the key once) nor gives back its hash.
		{collection: collections.APIKeys, owner: byNobody, access: superusersOnly.withSuperuser(400, 200, 204)},
	})
}

// withKeys adds the API keys' cells to every records row: every key is refused by the records
// API, 403, and a revoked one 401.
func withKeys(rows []recordsRow) []recordsRow {
	keys := func(cell int, revoked int) []int {
		out := make([]int, len(apiKeyRoles))
		for i := range out {
			out[i] = cell
		}
		out[len(out)-1] = revoked
		return out
	}
	for i := range rows {
		r := &rows[i]
		r.list = slices.Clone(r.list)
		for _, k := range keys(403, 401) {
			r.list = append(r.list, map[int]seen{403: denied, 401: unauth}[k])
		}
		r.view = append(slices.Clone(r.view), keys(403, 401)...)
		r.create = append(slices.Clone(r.create), keys(403, 401)...)
		r.update = append(slices.Clone(r.update), keys(403, 401)...)
		r.delete = append(slices.Clone(r.delete), keys(403, 401)...)
	}
	return rows
}

// routeRow is one request to a route: the route as bound ("METHOD /pattern"), the request's
// path and query, its JSON body, and each role's exact status.
type routeRow struct {
	route  string
	url    string
	body   string
	status statuses
}

// routesMatrix has at least one row for every route the app's OnServe hooks add (hooks/routes.go
// and any other), cells in matrixRoles order: guest, A, B, P, S, merchant, superuser. Bodies
// get past validation where the caller is allowed, so that the status shows the access
// decision. The requests run in this order on one app (routesConfig), each row's roles in
// order.
func routesMatrix(w *matrixWorld) []routeRow {
	codeA := w.codes["A"]
	orderA := "/api/pba/conversions/api/" + w.orderA
	assetP, assetQ := w.owners["assets"][fx.ProgramP][0], w.owners["assets"][fx.ProgramQ][0]
	endpoint := w.owners["webhooks"][""][0]
	return []routeRow{
		{"GET /r/{code}", "/r/" + codeA, "", statuses{302, 302, 302, 302, 302, 302, 302, 302, 302, 302, 302, 302, 302, 302}},
		{"GET /r/{code}/{$}", "/r/" + codeA + "/", "", statuses{302, 302, 302, 302, 302, 302, 302, 302, 302, 302, 302, 302, 302, 302}},
		{"POST /api/pba/clicks", "/api/pba/clicks", `{"code":"` + codeA + `"}`, statuses{200, 200, 200, 200, 200, 200, 200, 403, 403, 403, 403, 403, 403, 401}},
		{"GET /r/{$}", "/r/?via=" + codeA, "", statuses{302, 302, 302, 302, 302, 302, 302, 302, 302, 302, 302, 302, 302, 302}},
		{"POST /api/pba/conversions", "/api/pba/conversions", `{"external_id":"matrix-sale","amount":1000,"currency":"usd","affiliate_code":"` + codeA + `","program":"` + fx.ProgramP + `"}`,
			statuses{401, 401, 401, 401, 401, 201, 200, 200, 403, 403, 403, 403, 403, 401}}, // the superuser's and the key's are the merchant's sale again
		{"POST /api/pba/conversions/{source}/{external_id...}", orderA, `{"status":"approved"}`, statuses{401, 401, 401, 401, 401, 200, 200, 200, 403, 403, 403, 403, 403, 401}},
		{"PATCH /api/pba/conversions/{source}/{external_id...}", orderA, `{"status":"approved"}`, statuses{401, 401, 401, 401, 401, 200, 200, 200, 403, 403, 403, 403, 403, 401}},
		{"GET /api/pba/postback", "/api/pba/postback?click_id=x", "", statuses{401, 401, 401, 401, 401, 401, 401, 400, 403, 403, 403, 403, 403, 401}},
		// Signed by the sender only: no credential of ours stands in for the signature.
		{"POST /api/pba/stripe/webhook", "/api/pba/stripe/webhook", `{}`, statuses{400, 400, 400, 400, 400, 400, 400, 403, 403, 403, 403, 403, 403, 401}},
		{"GET /api/pba/unsubscribe", "/api/pba/unsubscribe?token=forged", "", statuses{400, 400, 400, 400, 400, 400, 400, 403, 403, 403, 403, 403, 403, 401}},
		{"POST /api/pba/unsubscribe", "/api/pba/unsubscribe?token=forged", "", statuses{400, 400, 400, 400, 400, 400, 400, 403, 403, 403, 403, 403, 403, 401}},
		{"POST /api/pba/resend/webhook", "/api/pba/resend/webhook", `{}`, statuses{400, 400, 400, 400, 400, 400, 400, 403, 403, 403, 403, 403, 403, 401}},
		{"GET /api/pba/survey", "/api/pba/survey?score=5&token=forged.x.y.z", "", statuses{400, 400, 400, 400, 400, 400, 400, 403, 403, 403, 403, 403, 403, 401}},
		{"POST /api/pba/survey", "/api/pba/survey?score=5&token=forged.x.y.z", "", statuses{400, 400, 400, 400, 400, 400, 400, 403, 403, 403, 403, 403, 403, 401}},
		{"GET /api/pba/feedback/summary", "/api/pba/feedback/summary", "", statuses{401, 403, 403, 403, 403, 401, 200, 403, 403, 403, 403, 403, 403, 401}},
		{"GET /api/pba/stats", "/api/pba/stats", "", statuses{401, 200, 200, 200, 200, 401, 200, 403, 403, 403, 403, 200, 403, 401}},
		{"GET /api/pba/stats", "/api/pba/stats?affiliate=" + fx.A.ID, "", statuses{401, 200, 403, 403, 403, 401, 200, 403, 403, 403, 403, 200, 403, 401}},
		{"GET /api/pba/balance", "/api/pba/balance", "", statuses{401, 200, 200, 200, 200, 401, 400, 403, 403, 403, 403, 400, 403, 401}}, // superusers name the affiliate
		{"GET /api/pba/balance", "/api/pba/balance?affiliate=" + fx.A.ID, "", statuses{401, 200, 403, 403, 403, 401, 200, 403, 403, 403, 403, 200, 403, 401}},
		{"POST /api/pba/paddle/webhook", "/api/pba/paddle/webhook", `{}`, statuses{400, 400, 400, 400, 400, 400, 400, 403, 403, 403, 403, 403, 403, 401}},
		{"POST /api/pba/lemonsqueezy/webhook", "/api/pba/lemonsqueezy/webhook", `{}`, statuses{400, 400, 400, 400, 400, 400, 400, 403, 403, 403, 403, 403, 403, 401}},
		{"POST /api/pba/shopify/webhook", "/api/pba/shopify/webhook", `{}`, statuses{400, 400, 400, 400, 400, 400, 400, 403, 403, 403, 403, 403, 403, 401}},
		// Outgoing webhooks: superusers only.
		{"POST /api/pba/webhooks/{id}/test", "/api/pba/webhooks/" + endpoint + "/test", "", statuses{401, 403, 403, 403, 403, 401, 201, 403, 403, 403, 403, 403, 403, 401}},
		{"POST /api/pba/webhooks/{id}/deliveries/{delivery}/resend", "/api/pba/webhooks/" + endpoint + "/deliveries/" + w.owners["webhook_deliveries"][""][0] + "/resend", "",
			statuses{401, 403, 403, 403, 403, 401, 200, 403, 403, 403, 403, 403, 403, 401}},
		// Stripe is configured but refuses (routesConfig): approved affiliates get as far as calling it.
		{"POST /api/pba/connect/onboard", "/api/pba/connect/onboard", "", statuses{401, 502, 502, 403, 403, 401, 403, 403, 403, 403, 403, 403, 403, 401}},
		// Promotional materials: approved affiliates (their own), superusers preview as one.
		{"GET /api/pba/assets", "/api/pba/assets", "", statuses{401, 200, 200, 403, 403, 401, 400, 403, 403, 403, 403, 403, 403, 401}},
		{"GET /api/pba/assets", "/api/pba/assets?affiliate=" + fx.A.ID, "", statuses{401, 200, 403, 403, 403, 401, 200, 403, 403, 403, 403, 403, 403, 401}},
		{"GET /api/pba/assets/{id}", "/api/pba/assets/" + assetP, "", statuses{401, 200, 200, 403, 403, 401, 400, 403, 403, 403, 403, 403, 403, 401}},
		{"GET /api/pba/assets/{id}", "/api/pba/assets/" + assetP + "?affiliate=" + fx.A.ID, "", statuses{401, 200, 403, 403, 403, 401, 200, 403, 403, 403, 403, 403, 403, 401}},
		{"GET /api/pba/assets/{id}", "/api/pba/assets/" + assetQ, "", statuses{401, 404, 404, 403, 403, 401, 400, 403, 403, 403, 403, 403, 403, 401}},
		{"POST /api/pba/assets/{id}/announce", "/api/pba/assets/" + assetP + "/announce", "", statuses{401, 403, 403, 403, 403, 401, 201, 403, 403, 403, 403, 403, 403, 401}},
		// An affiliate's own campaigns (B's alone is not in A's answer).
		{"GET /api/pba/incentives", "/api/pba/incentives", "", statuses{401, 200, 200, 200, 200, 401, 403, 403, 403, 403, 403, 403, 403, 401}},
		// The portal: a program's public terms (anyone), an affiliate's own terms (any status).
		{"GET /api/pba/apply/{slug}", "/api/pba/apply/default", "", statuses{200, 200, 200, 200, 200, 200, 200, 403, 403, 403, 403, 403, 403, 401}},
		{"GET /api/pba/apply/{slug}", "/api/pba/apply/no-such-program", "", statuses{404, 404, 404, 404, 404, 404, 404, 403, 403, 403, 403, 403, 403, 401}},
		{"GET /api/pba/terms", "/api/pba/terms", "", statuses{401, 200, 200, 200, 200, 401, 403, 403, 403, 403, 403, 403, 403, 401}},
		{"GET /api/pba/leaderboard", "/api/pba/leaderboard?program=" + fx.ProgramP, "", statuses{401, 403, 403, 403, 403, 401, 200, 403, 403, 403, 403, 200, 403, 401}},
		// Commission is ranked within one currency: P (usd) and Q (eur) together are a 400.
		{"GET /api/pba/leaderboard", "/api/pba/leaderboard", "", statuses{401, 403, 403, 403, 403, 401, 400, 403, 403, 403, 403, 400, 403, 401}},
		{"GET /api/pba/owed", "/api/pba/owed", "", statuses{401, 403, 403, 403, 403, 401, 200, 403, 403, 403, 403, 200, 403, 401}},
		{"GET /api/pba/breakdown", "/api/pba/breakdown?dim=sub", "", statuses{401, 200, 200, 200, 200, 401, 400, 403, 403, 403, 403, 400, 403, 401}}, // superusers name the affiliate
		{"GET /api/pba/breakdown", "/api/pba/breakdown?dim=link&affiliate=" + fx.A.ID, "", statuses{401, 200, 403, 403, 403, 401, 200, 403, 403, 403, 403, 200, 403, 401}},
		{"GET /api/pba/breakdown", "/api/pba/breakdown?dim=country", "", statuses{401, 403, 403, 403, 403, 401, 200, 403, 403, 403, 403, 200, 403, 401}},
		{"GET /api/pba/programs/schedule", "/api/pba/programs/schedule?spec=" + url.QueryEscape("0 9 1 * *"), "", statuses{401, 403, 403, 403, 403, 401, 200, 403, 403, 403, 403, 403, 403, 401}},
		{"GET /api/pba/config", "/api/pba/config", "", statuses{401, 403, 403, 403, 403, 401, 200, 403, 403, 403, 403, 403, 403, 401}},
		{"GET /api/pba/metrics", "/api/pba/metrics", "", statuses{401, 403, 403, 403, 403, 401, 200, 403, 403, 403, 403, 403, 403, 401}},
		{"POST /api/pba/messages/preview", "/api/pba/messages/preview", `{}`, statuses{401, 403, 403, 403, 403, 401, 200, 403, 403, 403, 403, 403, 403, 401}},
		{"GET /api/pba/ledger/check", "/api/pba/ledger/check", "", statuses{401, 403, 403, 403, 403, 401, 200, 403, 403, 403, 403, 403, 403, 401}},
		{"POST /api/pba/commissions/run", "/api/pba/commissions/run", "", statuses{401, 403, 403, 403, 403, 401, 200, 403, 403, 403, 403, 403, 403, 401}},
		{"POST /api/pba/tiers/evaluate", "/api/pba/tiers/evaluate", "", statuses{401, 403, 403, 403, 403, 401, 200, 403, 403, 403, 403, 403, 403, 401}},
		{"GET /api/pba/payouts/preview", "/api/pba/payouts/preview", "", statuses{401, 403, 403, 403, 403, 401, 200, 403, 403, 403, 403, 403, 200, 401}},
		{"POST /api/pba/payouts/run", "/api/pba/payouts/run", `{"program":"` + fx.ProgramP + `"}`, statuses{401, 403, 403, 403, 403, 401, 200, 403, 403, 403, 403, 403, 403, 401}},
		{"GET /api/pba/export/payouts.csv", "/api/pba/export/payouts.csv", "", statuses{401, 403, 403, 403, 403, 401, 200, 403, 403, 403, 403, 403, 200, 401}},
		{"GET /api/pba/export/affiliates.csv", "/api/pba/export/affiliates.csv", "", statuses{401, 403, 403, 403, 403, 401, 200, 403, 403, 200, 403, 403, 403, 401}},
		{"GET /api/pba/export/conversions.csv", "/api/pba/export/conversions.csv", "", statuses{401, 403, 403, 403, 403, 401, 200, 403, 200, 403, 403, 403, 403, 401}},
		{"GET /api/pba/export/commissions.csv", "/api/pba/export/commissions.csv", "", statuses{401, 403, 403, 403, 403, 401, 200, 403, 403, 403, 403, 403, 200, 401}},
		// The merchant API: superusers and the keys of each route's scope.
		{"GET /api/pba/sales", "/api/pba/sales?affiliate=" + fx.A.ID, "", statuses{401, 403, 403, 403, 403, 401, 200, 403, 200, 403, 403, 403, 403, 401}},
		{"GET /api/pba/affiliates", "/api/pba/affiliates?program=" + fx.ProgramP, "", statuses{401, 403, 403, 403, 403, 401, 200, 403, 403, 200, 403, 403, 403, 401}},
		{"GET /api/pba/affiliates/{id}", "/api/pba/affiliates/" + fx.B.ID, "", statuses{401, 403, 403, 403, 403, 401, 200, 403, 403, 200, 403, 403, 403, 401}},
		// The superuser creates the affiliate; the key's create of the same email is then a 400.
		{"POST /api/pba/affiliates", "/api/pba/affiliates", `{"name":"Matrix","email":"matrix-new@fixture.test"}`, statuses{401, 403, 403, 403, 403, 401, 201, 403, 403, 403, 400, 403, 403, 401}},
		{"PATCH /api/pba/affiliates/{id}", "/api/pba/affiliates/" + fx.A.ID, `{"notes":"changed by the matrix"}`, statuses{401, 403, 403, 403, 403, 401, 200, 403, 403, 403, 200, 403, 403, 401}},
		{"GET /api/pba/payouts", "/api/pba/payouts", "", statuses{401, 403, 403, 403, 403, 401, 200, 403, 403, 403, 403, 403, 200, 401}},
		{"POST /api/pba/api-keys", "/api/pba/api-keys", `{"name":"matrix","scopes":["stats:read"]}`, statuses{401, 403, 403, 403, 403, 401, 201, 403, 403, 403, 403, 403, 403, 401}},
		{"GET /api/pba/openapi.json", "/api/pba/openapi.json", "", statuses{200, 200, 200, 200, 200, 200, 200, 403, 403, 403, 403, 403, 403, 401}},
		// Personal data (GDPR): superusers only. The erasure without its confirmation is a 400
		// (nothing erased: the later rows need A); an unknown visitor has nothing to erase.
		{"GET /api/pba/affiliates/{id}/export", "/api/pba/affiliates/" + fx.A.ID + "/export", "", statuses{401, 403, 403, 403, 403, 401, 200, 403, 403, 403, 403, 403, 403, 401}},
		{"POST /api/pba/affiliates/{id}/erase", "/api/pba/affiliates/" + fx.A.ID + "/erase", `{}`, statuses{401, 403, 403, 403, 403, 401, 400, 403, 403, 403, 403, 403, 403, 401}},
		{"POST /api/pba/visitors/{visitor}/erase", "/api/pba/visitors/nobody-at-all/erase", "", statuses{401, 403, 403, 403, 403, 401, 200, 403, 403, 403, 403, 403, 403, 401}},
		// PocketBase's dashboard adds this one in its own OnServe hook: its extensions' script, public.
		{"GET /_/extensions.js", "/_/extensions.js", "", statuses{200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200}},
	}
}

// matrixWorld is the fixture's world with a suspended affiliate and rows of every owner in
// every collection, and what each role must never see.
type matrixWorld struct {
	fx      *pbatest.Fixture[hooks.Config]
	actors  map[string]matrixActor
	codes   map[string]string              // role → its affiliate code
	orderA  string                         // external_id of A's api sale
	owners  map[string]map[string][]string // collection → owner → row ids, oldest first
	markers map[string][]string            // owner → its rows' ids and marker values
	emails  map[string]string              // auth record id → email
	secrets []string                       // hidden fields' values: for superusers only
	hidden  map[string][]string            // role → what its answers must not hold (cached)
	paths   map[string]map[string]string   // collection → relation path → collection it reaches
	// referenced are the collections a relation field points to.
	referenced map[string]bool
}

// matrixActor is a role's credentials and what it owns.
type matrixActor struct {
	auth      string   // the Authorization header ("" none)
	affiliate string   // its affiliate id, if any
	program   string   // its program, if any
	alsoSees  []string // other owners whose data its answers may hold (a merchant: its program's affiliates)
}

// matrixKey is the API key of an apiKeyRoles role.
func matrixKey(role string) string {
	return "pba_" + strings.NewReplacer(":", "", "key", "matrix").Replace(role) + strings.Repeat("0", 24)
}

// mark is the prefix of seeded values that identify their owner in an answer.
const mark = "mk-"

// newMatrixWorld derives the matrix's world from the fixture once per test.
func newMatrixWorld(t *testing.T) *matrixWorld {
	t.Helper()
	var suspended pbatest.Actor
	derived, err := fx.Derive(func(app core.App) error {
		var err error
		suspended, err = seedMatrix(app)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(derived.Cleanup)
	w := &matrixWorld{fx: derived, hidden: map[string][]string{}}
	w.actors = map[string]matrixActor{
		"guest":     {},
		"A":         {auth: fx.A.Token, affiliate: fx.A.ID, program: fx.ProgramP},
		"B":         {auth: fx.B.Token, affiliate: fx.B.ID, program: fx.ProgramP},
		"P":         {auth: fx.Pending.Token, affiliate: fx.Pending.ID, program: fx.ProgramP},
		"S":         {auth: suspended.Token, affiliate: suspended.ID, program: fx.ProgramP},
		"merchant":  {auth: "Bearer " + fx.SecretP, program: fx.ProgramP, alsoSees: []string{fx.A.ID, fx.B.ID, fx.Pending.ID, suspended.ID}},
		"superuser": {auth: fx.Superuser.Token},
	}
	// The API keys act for the whole installation: their answers may hold anyone's data, but
	// never a hidden field's value.
	everyone := []string{fx.A.ID, fx.B.ID, fx.Pending.ID, suspended.ID, fx.ProgramP, fx.ProgramQ}
	for _, role := range apiKeyRoles {
		a := matrixActor{auth: "Bearer " + matrixKey(role)}
		if role != "key:revoked" {
			a.alsoSees = everyone
		}
		w.actors[role] = a
	}
	return w
}

// survey reads who owns which rows and the markers and secrets from app (a clone of the
// world, before any request).
func (w *matrixWorld) survey(t *testing.T, app core.App, rows []recordsRow) {
	t.Helper()
	w.owners = map[string]map[string][]string{}
	w.markers = map[string][]string{}
	w.codes = map[string]string{}
	w.emails = map[string]string{}
	w.paths = map[string]map[string]string{}
	all, err := app.FindAllCollections()
	if err != nil {
		t.Fatal(err)
	}
	w.referenced = map[string]bool{}
	for _, c := range all {
		w.paths[c.Name] = relationPaths(all, c)
		for p, target := range w.paths[c.Name] {
			if !strings.Contains(p, ".") && !strings.Contains(p, "_via_") { // a relation field of c
				w.referenced[target] = true
			}
		}
	}
	for _, row := range rows {
		byOwner := ownersOf(t, app, row)
		w.owners[row.collection] = byOwner
		ownerOf := map[string]string{}
		for owner, ids := range byOwner {
			for _, id := range ids {
				ownerOf[id] = owner
			}
		}
		records, err := app.FindAllRecords(row.collection)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range records {
			owner := ownerOf[r.Id]
			if row.collection != collections.Programs { // a signup names its program: program ids are no secret
				w.markers[owner] = append(w.markers[owner], r.Id)
			}
			if r.Collection().IsAuth() {
				w.markers[owner] = append(w.markers[owner], r.Email())
				w.emails[r.Id] = r.Email()
			}
			for _, f := range r.Collection().Fields {
				if f.Type() == core.FieldTypePassword {
					continue
				}
				v := r.GetString(f.GetName())
				switch {
				case f.GetHidden() && len(v) >= 8:
					w.secrets = append(w.secrets, v)
				case strings.HasPrefix(v, mark):
					w.markers[owner] = append(w.markers[owner], v)
				}
			}
			if row.collection == collections.Affiliates {
				w.markers[owner] = append(w.markers[owner], r.GetString(collections.FieldCode))
				for role, a := range w.actors {
					if a.affiliate == r.Id {
						w.codes[role] = r.GetString(collections.FieldCode)
					}
				}
			}
		}
	}
	conv, err := app.FindFirstRecordByFilter(collections.Conversions, "affiliate = {:a} && source = 'api'", map[string]any{"a": fx.A.ID})
	if err != nil {
		t.Fatal(err)
	}
	w.orderA = conv.GetString(collections.ConversionExternalID)
}

// ownersOf reads the ids of row's collection by owner, oldest first.
func ownersOf(t *testing.T, app core.App, row recordsRow) map[string][]string {
	t.Helper()
	var found []struct {
		ID    string `db:"id"`
		Owner string `db:"owner"`
	}
	err := app.DB().NewQuery("SELECT id, (" + row.owner + ") AS owner FROM `" + row.collection + "` ORDER BY rowid").All(&found)
	if err != nil {
		t.Fatalf("%s: %v", row.collection, err)
	}
	byOwner := map[string][]string{}
	for _, f := range found {
		byOwner[f.Owner] = append(byOwner[f.Owner], f.ID)
	}
	return byOwner
}

// forbidden is what role's answers must never hold: every marker of an owner it is not, and
// every hidden value. Superusers see everything.
func (w *matrixWorld) forbidden(role string) []string {
	if role == "superuser" {
		return nil
	}
	if f, ok := w.hidden[role]; ok {
		return f
	}
	f := slices.Clone(w.secrets)
	for owner, markers := range w.markers {
		if !w.allowed(role, owner) && !slices.Contains(w.actors[role].alsoSees, owner) {
			f = append(f, markers...)
		}
	}
	w.hidden[role] = f
	return f
}

// allowed says whether role reads owner's rows on its own account (its rows, its program's).
func (w *matrixWorld) allowed(role, owner string) bool {
	a := w.actors[role]
	return owner != "" && (owner == a.affiliate || owner == a.program)
}

// ownTarget is the row role views, updates and deletes as its own: its affiliate's first row,
// else its program's, else A's last row (the target of roles that own none).
func (w *matrixWorld) ownTarget(role, collection string) string {
	a := w.actors[role]
	for _, owner := range []string{a.affiliate, a.program} {
		if ids := w.owners[collection][owner]; owner != "" && len(ids) > 0 {
			return ids[0]
		}
	}
	return w.othersTarget(collection)
}

// othersTarget is A's last row, or its program's, or the first row of nobody: the row of the
// roles that own none of the collection.
func (w *matrixWorld) othersTarget(collection string) string {
	for _, owner := range []string{fx.A.ID, fx.ProgramP, ""} {
		if ids := w.owners[collection][owner]; len(ids) > 0 {
			return ids[len(ids)-1]
		}
	}
	return ""
}

// foreignRows are the rows role tries as another's: the last row of its twin (B for A, A
// for the other affiliates) or, in rows of programs, of the first program not its own. The
// rules do not tell one affiliate from another, so one other owner is enough.
func (w *matrixWorld) foreignRows(role, collection string) []string {
	twin := fx.A.ID
	if w.actors[role].affiliate == fx.A.ID {
		twin = fx.B.ID
	}
	owners := w.owners[collection]
	if rows := owners[twin]; len(rows) > 0 {
		return rows[len(rows)-1:]
	}
	for _, owner := range slices.Sorted(maps.Keys(owners)) {
		if rows := owners[owner]; owner != "" && !w.allowed(role, owner) {
			return rows[len(rows)-1:]
		}
	}
	return nil
}

// check fails the test when res is not want or holds what role must not see.
func (w *matrixWorld) check(t *testing.T, role, what string, res *pbatest.Response, want int) {
	t.Helper()
	body := res.Body.String()
	if res.Code != want {
		t.Errorf("%s as %s: %d, want %d: %.300s", what, role, res.Code, want, body)
	}
	w.checkBody(t, role, what, body)
}

// checkBody fails the test when body holds what role must not see.
func (w *matrixWorld) checkBody(t *testing.T, role, what, body string) {
	t.Helper()
	for _, m := range w.forbidden(role) {
		if strings.Contains(body, m) {
			t.Errorf("%s as %s: the answer holds %q, which is another's: %.500s", what, role, m, body)
			return
		}
	}
}

// expectedRows are the ids of owners (a collection's rows by owner) a list by role returns
// under s.
func (w *matrixWorld) expectedRows(role string, owners map[string][]string, s seen) []string {
	var ids []string
	a := w.actors[role]
	for owner, rows := range owners {
		switch {
		case s == every,
			s == own && owner != "" && owner == a.affiliate,
			s == program && owner != "" && owner == a.program:
			ids = append(ids, rows...)
		}
	}
	sort.Strings(ids)
	return ids
}

// listedIDs are the ids of a records list answer, sorted.
func listedIDs(res *pbatest.Response) []string {
	items, _ := res.JSON["items"].([]any)
	ids := make([]string, 0, len(items))
	for _, it := range items {
		if m, ok := it.(map[string]any); ok {
			ids = append(ids, fmt.Sprint(m["id"]))
		}
	}
	sort.Strings(ids)
	return ids
}

func recordsURL(collection string) string { return "/api/collections/" + collection + "/records" }

// body fills a row's body template for role.
func (w *matrixWorld) body(template, role, self string) string {
	if template == "" {
		return "{}"
	}
	return strings.NewReplacer("{self}", self, "{role}", strings.ToLower(role)).Replace(template)
}

func TestAccessMatrix(t *testing.T) {
	rows := recordsMatrix()
	w := newMatrixWorld(t)
	world := w.fx
	app := world.App(t)
	defer app.Cleanup()
	w.survey(t, app, rows)
	h, routes := pbatest.ServeRoutes(t, app)

	complete := true // every row has a cell for every role, and every role an actor
	t.Run("every collection and route has a complete row", func(t *testing.T) {
		all, err := app.FindAllCollections()
		if err != nil {
			t.Fatal(err)
		}
		names := map[string]bool{}
		for _, c := range all {
			names[c.Name] = true
			if !slices.ContainsFunc(rows, func(r recordsRow) bool { return r.collection == c.Name }) {
				t.Errorf("collection %q has no row in recordsMatrix (hooks/access_matrix_test.go)", c.Name)
			}
		}
		for _, row := range rows {
			if !names[row.collection] {
				t.Errorf("recordsMatrix has a row for %q, which is no collection", row.collection)
			}
			for op, n := range map[string]int{"list": len(row.list), "view": len(row.view), "create": len(row.create),
				"update": len(row.update), "delete": len(row.delete)} {
				if n != len(matrixRoles) {
					complete = false
					t.Errorf("%s %s: %d cells for %d roles %v", row.collection, op, n, len(matrixRoles), matrixRoles)
				}
			}
			if len(w.owners[row.collection]) == 0 {
				t.Errorf("%s has no rows: seed some in seedMatrix so that its cells are checked", row.collection)
			}
		}
		covered := map[string]bool{}
		for _, r := range routesMatrix(w) {
			covered[r.route] = true
			if !slices.Contains(routes, r.route) {
				t.Errorf("routesMatrix has a row for %q, which is no route", r.route)
			}
			if len(r.status) != len(matrixRoles) {
				complete = false
				t.Errorf("%s: %d cells for %d roles %v", r.route, len(r.status), len(matrixRoles), matrixRoles)
			}
		}
		for _, r := range routes {
			if !covered[r] {
				t.Errorf("route %q has no row in routesMatrix (hooks/access_matrix_test.go)", r)
			}
		}
		for _, role := range matrixRoles {
			if _, ok := w.actors[role]; !ok {
				complete = false
				t.Errorf("role %q has no matrixActor in newMatrixWorld", role)
			}
		}
	})
	if !complete {
		return // the checks below index the cells by role
	}

	t.Run("records: list and view", func(t *testing.T) {
		for _, row := range rows {
			for i, role := range matrixRoles {
				a := w.actors[role]
				// The server's workers add rows meanwhile (mails, templates, leases): the answer
				// holds what was there before and nothing that was not there after.
				before := w.expectedRows(role, ownersOf(t, app, row), row.list[i])
				res := pbatest.Request(h, http.MethodGet, recordsURL(row.collection)+"?perPage=500", a.auth, "")
				after := w.expectedRows(role, ownersOf(t, app, row), row.list[i])
				what := "list " + row.collection
				if refused(row.list[i]) {
					w.check(t, role, what, res, map[seen]int{denied: 403, unauth: 401}[row.list[i]])
				} else {
					w.check(t, role, what, res, 200)
					if row.list[i] != none && len(before) == 0 {
						t.Errorf("%s as %s: nothing to see under %q: seed rows in seedMatrix", what, role, row.list[i])
					}
					got := listedIDs(res)
					if res.Code == 200 && (slices.ContainsFunc(before, func(id string) bool { return !slices.Contains(got, id) }) ||
						slices.ContainsFunc(got, func(id string) bool { return !slices.Contains(after, id) })) {
						t.Errorf("%s as %s (%s): got rows %v, want %v", what, role, row.list[i], got, after)
					}
				}
				target := w.ownTarget(role, row.collection)
				res = pbatest.Request(h, http.MethodGet, recordsURL(row.collection)+"/"+target, a.auth, "")
				w.check(t, role, "view "+row.collection+" "+target, res, row.view[i])
				if res.Code == 200 && !strings.Contains(res.Body.String(), target) {
					t.Errorf("view %s as %s: 200 without the row: %s", row.collection, role, res.Body)
				}
				for _, id := range w.foreignRows(role, row.collection) {
					if a.affiliate == "" {
						break // the roles without rows try A's above
					}
					res := pbatest.Request(h, http.MethodGet, recordsURL(row.collection)+"/"+id, a.auth, "")
					w.check(t, role, "view another's "+row.collection+" "+id, res, row.view[0])
				}
			}
		}
	})

	t.Run("records: filter, sort, expand and fields", func(t *testing.T) {
		w.checkOracles(t, h, app, rows)
	})

	t.Run("records: create, update, delete", func(t *testing.T) {
		// Writes change the world, so they run on clones of it. A superuser's delete of a row
		// other rows refer to depends on those (cascades, refusals), so each collection others
		// refer to gets a clone of its own; the rest share one.
		shared := world.App(t)
		defer shared.Cleanup()
		sh := pbatest.Serve(t, shared)
		for _, row := range rows {
			if !w.referenced[row.collection] {
				w.checkWrites(t, sh, row)
				continue
			}
			own := world.App(t)
			w.checkWrites(t, pbatest.Serve(t, own), row)
			own.Cleanup()
		}
	})

	t.Run("routes", func(t *testing.T) {
		rapp := world.AppWith(t, routesConfig(t))
		defer rapp.Cleanup()
		rh := pbatest.Serve(t, rapp)
		for _, r := range routesMatrix(w) {
			method, _, _ := strings.Cut(r.route, " ")
			for i, role := range matrixRoles {
				// Each from its own address: the rate limits (tested in ratelimit_test.go) are
				// not what this measures.
				res := pbatest.Request(rh, method, r.url, w.actors[role].auth, r.body, fromNewAddress())
				w.check(t, role, method+" "+r.url, res, r.status[i])
			}
		}
	})

	t.Run("realtime", func(t *testing.T) {
		w.checkRealtime(t, rows)
	})
}

// checkWrites sends every role's create, update and delete of row's collection to h, its own
// row's and (for affiliates) another's, the superuser last.
func (w *matrixWorld) checkWrites(t *testing.T, h http.Handler, row recordsRow) {
	t.Helper()
	order := slices.DeleteFunc(slices.Clone(matrixRoles), func(r string) bool { return r == "superuser" })
	order = append(order, "superuser") // the superuser's delete comes last
	base := recordsURL(row.collection)
	cell := func(s statuses, role string) int { return s[slices.Index(matrixRoles, role)] }
	for _, role := range order {
		a := w.actors[role]
		res := pbatest.Request(h, http.MethodPost, base, a.auth, w.body(row.createBody, role, a.affiliate))
		w.check(t, role, "create "+row.collection, res, cell(row.create, role))
		if a.affiliate != "" && strings.Contains(row.createBody, "{self}") {
			for _, other := range w.foreignAffiliates(role) {
				res := pbatest.Request(h, http.MethodPost, base, a.auth, w.body(row.createBody, role, other))
				w.check(t, role, "create "+row.collection+" for another affiliate", res, row.create[0])
			}
		}
	}
	for _, role := range order {
		a := w.actors[role]
		target := w.ownTarget(role, row.collection)
		res := pbatest.Request(h, http.MethodPatch, base+"/"+target, a.auth, w.body(row.updateBody, role, a.affiliate))
		w.check(t, role, "update "+row.collection+" "+target, res, cell(row.update, role))
		if a.affiliate == "" {
			continue
		}
		for _, id := range w.foreignRows(role, row.collection) {
			res := pbatest.Request(h, http.MethodPatch, base+"/"+id, a.auth, w.body(row.updateBody, role, a.affiliate))
			w.check(t, role, "update another's "+row.collection+" "+id, res, row.update[0])
		}
	}
	for _, role := range order {
		if a := w.actors[role]; a.affiliate != "" {
			for _, id := range w.foreignRows(role, row.collection) {
				res := pbatest.Request(h, http.MethodDelete, base+"/"+id, a.auth, "")
				w.check(t, role, "delete another's "+row.collection+" "+id, res, row.delete[0])
			}
		}
	}
	for _, role := range order {
		target := w.ownTarget(role, row.collection)
		res := pbatest.Request(h, http.MethodDelete, base+"/"+target, w.actors[role].auth, "")
		w.check(t, role, "delete "+row.collection+" "+target, res, cell(row.delete, role))
	}
}

// routesConfig is the fixture's configuration with Stripe payouts, the webhooks' secrets and a
// public URL, so that the routes that need them answer who may use them. Stripe is a local server that refuses
// every call (a 400, which the client does not retry).
func routesConfig(t *testing.T) hooks.Config {
	stripe := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error":{"type":"invalid_request_error","message":"refused by the access matrix"}}`))
	}))
	t.Cleanup(stripe.Close)
	cfg := fx.Config
	cfg.StripeSecretKey = "sk_test_matrix"
	cfg.StripeAPIBase = stripe.URL
	cfg.StripeWebhookSecret = "whsec_matrix"
	cfg.PaddleWebhookSecret, cfg.LemonSqueezyWebhookSecret, cfg.ShopifyWebhookSecret = "matrix", "matrix", "matrix"
	cfg.ResendWebhookSecret = "whsec_" + base64.StdEncoding.EncodeToString([]byte("matrix-resend-secret"))
	cfg.PublicURL = "http://127.0.0.1:8090"
	return cfg
}

// foreignAffiliates are the affiliates other than role's own, sorted.
func (w *matrixWorld) foreignAffiliates(role string) []string {
	var ids []string
	for other, a := range w.actors {
		if other != role && a.affiliate != "" && a.affiliate != w.actors[role].affiliate {
			ids = append(ids, a.affiliate)
		}
	}
	sort.Strings(ids)
	return ids
}

// relationPaths are the relation paths a filter, sort or expand on collection c may follow:
// its relation fields, the back-relations to it (<other>_via_<field>) and one step further
// from each relation field, each with the name of the collection it reaches.
func relationPaths(all []*core.Collection, c *core.Collection) map[string]string {
	byID := map[string]*core.Collection{}
	for _, x := range all {
		byID[x.Id] = x
	}
	step := func(from *core.Collection) map[string]string {
		paths := map[string]string{}
		for _, f := range from.Fields {
			if rel, ok := f.(*core.RelationField); ok {
				paths[f.GetName()] = byID[rel.CollectionId].Name
			}
		}
		for _, x := range all {
			for _, f := range x.Fields {
				if rel, ok := f.(*core.RelationField); ok && rel.CollectionId == from.Id {
					paths[x.Name+"_via_"+f.GetName()] = x.Name
				}
			}
		}
		return paths
	}
	paths := step(c)
	for _, f := range c.Fields {
		rel, ok := f.(*core.RelationField)
		if !ok {
			continue
		}
		for p, target := range step(byID[rel.CollectionId]) {
			paths[f.GetName()+"."+p] = target
		}
	}
	return paths
}

// checkOracles tries the indirect ways to another's data on every collection: every relation
// path expanded (with every field asked for), sorted on, and used in filters naming a row (or
// the email) of someone else. A filter can only narrow what the caller may list, so a filter
// on a row the caller may not see must match nothing (or be refused); anything it matches is
// a leak. The rules tell affiliates apart by status only, so A tries the filters and expands
// two steps; the others expand one.
func (w *matrixWorld) checkOracles(t *testing.T, h http.Handler, app core.App, rows []recordsRow) {
	filters := 0
	for _, row := range rows {
		c, err := app.FindCollectionByNameOrId(row.collection)
		if err != nil {
			t.Fatal(err)
		}
		paths := w.paths[row.collection]
		names := slices.Sorted(maps.Keys(paths))
		oneStep := slices.DeleteFunc(slices.Clone(names), func(p string) bool { return strings.Contains(p, ".") })
		fields := "*," + strings.Join(c.Fields.FieldNames(), ",") + ",expand.*"
		for i, role := range matrixRoles {
			if role == "superuser" || refused(row.list[i]) || row.list[i] == none {
				continue // nothing to expand
			}
			expand := oneStep
			if role == "A" {
				expand = names
			}
			q := url.Values{"perPage": {"500"}, "expand": {strings.Join(expand, ",")}, "fields": {fields}}
			res := pbatest.Request(h, http.MethodGet, recordsURL(row.collection)+"?"+q.Encode(), w.actors[role].auth, "")
			w.check(t, role, "expand "+row.collection, res, 200)
		}
		if l := row.list[slices.Index(matrixRoles, "A")]; l == denied || l == none {
			continue
		}
		list := func(q url.Values, opts ...func(*http.Request)) *pbatest.Response {
			q.Set("perPage", "500")
			return pbatest.Request(h, http.MethodGet, recordsURL(row.collection)+"?"+q.Encode(), fx.A.Token, "", opts...)
		}
		for _, p := range append([]string{""}, names...) {
			target, field := row.collection, "id = "
			if p != "" {
				target, field = paths[p], p+".id ?= "
			}
			for _, id := range w.foreignRows("A", target) {
				conds := []string{field + "'" + id + "'"}
				if email := w.emails[id]; email != "" {
					conds = append(conds, strings.TrimSuffix(field, "id ?= ")+"email ?~ '"+email+"'")
				}
				for _, f := range conds {
					res := list(url.Values{"filter": {f}}, fromNewAddress())
					filters++
					w.checkBody(t, "A", "filter "+row.collection+" by "+f, res.Body.String())
					if res.Code == 200 && len(listedIDs(res)) > 0 || res.Code != 200 && res.Code != 400 {
						t.Errorf("filter %s by %s as A: %d %v: it matches a row A may not see", row.collection, f, res.Code, listedIDs(res))
					}
				}
			}
			if p != "" && !strings.Contains(p, "_via_") {
				res := list(url.Values{"sort": {"-" + p + ".id"}})
				w.checkBody(t, "A", "sort "+row.collection+" by "+p, res.Body.String())
				if res.Code != 200 && res.Code != 400 {
					t.Errorf("sort %s by %s as A: %d %s", row.collection, p, res.Code, res.Body)
				}
			}
		}
		// The filters are worth something only if one on A's own rows does match.
		if row.owner == byAffiliate {
			got := listedIDs(list(url.Values{"filter": {"affiliate.id ?= '" + fx.A.ID + "'"}}))
			if want := w.expectedRows("A", w.owners[row.collection], own); slices.ContainsFunc(want, func(id string) bool { return !slices.Contains(got, id) }) {
				t.Errorf("filter %s by A's own id: %v, want at least %v", row.collection, got, want)
			}
		}
	}
	t.Logf("%d filters", filters)
}

// fromNewAddress sends a request from an address no request came from before. PocketBase
// sleeps up to 500 ms before answering the fourth empty filtered list from one address within
// 3 s (against timing attacks); the oracles are thousands of such lists.
func fromNewAddress() func(*http.Request) {
	n := addresses.Add(1)
	return func(r *http.Request) { r.RemoteAddr = fmt.Sprintf("10.%d.%d.%d:40000", n>>16&255, n>>8&255, n&255) }
}

var addresses atomic.Int64

// checkRealtime subscribes every role to every collection (expanding its relations) and
// re-saves one row of every owner: each role hears of exactly those it may list, and nothing
// of anyone else's. Roles without an auth record (guest, merchant) subscribe as guests.
func (w *matrixWorld) checkRealtime(t *testing.T, rows []recordsRow) {
	app := w.fx.App(t)
	defer app.Cleanup()
	if _, err := apis.NewRouter(app); err != nil { // binds the realtime record events
		t.Fatal(err)
	}
	type heard struct {
		mu   sync.Mutex
		ids  map[string]bool // collection/id
		body strings.Builder
	}
	got := map[string]*heard{}
	for _, role := range matrixRoles {
		c := subscriptions.NewDefaultClient()
		var auth *core.Record
		var err error
		switch a := w.actors[role]; {
		case role == "superuser":
			auth, err = app.FindAuthRecordByEmail(core.CollectionNameSuperusers, fx.Superuser.Email)
		case a.affiliate != "":
			auth, err = app.FindRecordById(collections.Affiliates, a.affiliate)
		}
		if err != nil {
			t.Fatal(err)
		}
		if auth != nil {
			c.Set(apis.RealtimeClientAuthKey, auth)
		}
		for _, row := range rows {
			// One step of relations (the filters above take two).
			expand := slices.Sorted(func(yield func(string) bool) {
				for p := range w.paths[row.collection] {
					if !strings.Contains(p, ".") && !yield(p) {
						return
					}
				}
			})
			options, _ := json.Marshal(map[string]any{"query": map[string]string{"expand": strings.Join(expand, ",")}})
			c.Subscribe(row.collection + "/*?options=" + url.QueryEscape(string(options)))
		}
		app.SubscriptionsBroker().Register(c)
		h := &heard{ids: map[string]bool{}}
		got[role] = h
		go func() {
			for msg := range c.Channel() {
				var m struct {
					Record struct {
						ID string `json:"id"`
					} `json:"record"`
				}
				_ = json.Unmarshal(msg.Data, &m)
				collection, _, _ := strings.Cut(msg.Name, "/")
				h.mu.Lock()
				h.ids[collection+"/"+m.Record.ID] = true
				h.body.Write(msg.Data)
				h.mu.Unlock()
			}
		}()
		defer app.SubscriptionsBroker().Unregister(c.Id())
	}

	want := map[string][]string{} // role → collection/id it must hear of
	mayList := map[string]bool{}  // role/collection/id it may hear of
	for _, row := range rows {
		saved := map[string][]string{} // the first row of each owner
		for owner, ids := range w.owners[row.collection] {
			r, err := app.FindRecordById(row.collection, ids[0])
			if err != nil {
				t.Fatal(err)
			}
			if err := app.Save(r); err != nil {
				t.Fatalf("re-save %s %s: %v", row.collection, r.Id, err)
			}
			saved[owner] = ids[:1]
		}
		for i, role := range matrixRoles {
			if refused(row.list[i]) {
				continue
			}
			for _, id := range w.expectedRows(role, saved, row.list[i]) {
				want[role] = append(want[role], row.collection+"/"+id)
			}
			for _, id := range w.expectedRows(role, w.owners[row.collection], row.list[i]) {
				mayList[role+"/"+row.collection+"/"+id] = true
			}
		}
	}
	known := map[string]bool{} // collection/id of the rows surveyed (hooks may add others)
	for _, row := range rows {
		for _, ids := range w.owners[row.collection] {
			for _, id := range ids {
				known[row.collection+"/"+id] = true
			}
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, role := range matrixRoles {
		h := got[role]
		for {
			h.mu.Lock()
			missing := slices.DeleteFunc(slices.Clone(want[role]), func(k string) bool { return h.ids[k] })
			h.mu.Unlock()
			if len(missing) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("realtime: %s did not hear of its rows %v", role, missing)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	time.Sleep(200 * time.Millisecond) // what must not arrive has had the time to
	for _, role := range matrixRoles {
		h := got[role]
		h.mu.Lock()
		for k := range h.ids {
			if known[k] && !mayList[role+"/"+k] {
				t.Errorf("realtime: %s heard of %s, which it may not list", role, k)
			}
		}
		w.checkBody(t, role, "realtime", h.body.String())
		h.mu.Unlock()
	}
}

// seedMatrix adds to the fixture's world what the matrix needs: a suspended affiliate S,
// values only each affiliate has (marker values starting with mk-), rows of every affiliate in
// every collection it may own (two of A's, so that A's own and everyone else's targets differ),
// rows of program Q where rows belong to a program, and a row of nobody's in every other
// collection. It returns S.
func seedMatrix(app core.App) (pbatest.Actor, error) {
	var s pbatest.Actor
	// The matrix signs up a dozen accounts.
	if err := pbatest.FastPasswords(app, collections.Affiliates, "users"); err != nil {
		return s, err
	}
	affiliates, err := app.FindCollectionByNameOrId(collections.Affiliates)
	if err != nil {
		return s, err
	}
	sr := core.NewRecord(affiliates)
	sr.Load(map[string]any{"name": "Suspended S", "program": fx.ProgramP, "status": collections.AffiliateSuspended, "notes": "secret note about Suspended S"})
	sr.SetEmail("suspended@fixture.test")
	sr.SetVerified(true)
	sr.SetPassword(pbatest.Password)
	if err := app.Save(sr); err != nil {
		return s, err
	}
	token, err := sr.NewAuthToken()
	if err != nil {
		return s, err
	}
	s = pbatest.Actor{ID: sr.Id, Email: sr.Email(), Token: token}

	now := time.Now().UTC()
	for i, owner := range []struct{ id, tag string }{
		{fx.A.ID, "a1"}, {fx.A.ID, "a2"}, {fx.B.ID, "b1"}, {fx.Pending.ID, "p1"}, {s.ID, "s1"},
	} {
		m := func(what string) string { return mark + owner.tag + "-" + what }
		aff, err := app.FindRecordById(collections.Affiliates, owner.id)
		if err != nil {
			return s, err
		}
		aff.Set(collections.AffiliateWebhookSecret, m("webhook-secret"))
		aff.Set(collections.AffiliatePayoutEmail, m("payout")+"@fixture.test")
		aff.Set(collections.AffiliateStripeAccountID, m("acct"))
		if err := app.Save(aff); err != nil {
			return s, err
		}
		p := fx.ProgramP
		link, err := pbatest.Save(app, collections.Links, map[string]any{"affiliate": owner.id, "program": p, "label": m("label"), "sub_id": m("sub")})
		if err != nil {
			return s, err
		}
		click, err := pbatest.Save(app, collections.Clicks, map[string]any{"link": link.Id, "affiliate": owner.id, "program": p, "visitor": m("visitor"), "unique": true})
		if err != nil {
			return s, err
		}
		conv, err := pbatest.Save(app, collections.Conversions, map[string]any{"affiliate": owner.id, "program": p, "click": click.Id, "link": link.Id,
			"source": "manual", "external_id": m("order"), "customer": m("customer"), "amount": 7000 + i, "currency": "usd",
			"status": "approved", "occurred_at": now})
		if err != nil {
			return s, err
		}
		payout, err := pbatest.Save(app, collections.Payouts, map[string]any{"affiliate": owner.id, "program": p, "amount": 700 + i, "currency": "usd",
			"method": "manual", "status": "paid", "idempotency_key": m("idempotency"), "reference": m("reference"), "paid_at": now})
		if err != nil {
			return s, err
		}
		for _, seed := range []struct {
			collection string
			data       map[string]any
		}{
			{collections.Commissions, map[string]any{"affiliate": owner.id, "program": p, "conversion": conv.Id, "kind": "sale",
				"amount": 700 + i, "currency": "usd", "status": "paid", "payable_at": now.Add(-time.Hour), "payout": payout.Id, "note": m("note")}},
			{collections.StatsDaily, map[string]any{"day": now.Format(time.DateOnly), "affiliate": owner.id, "program": p, "link": link.Id,
				"clicks": 1, "unique_clicks": 1, "conversions": 1, "revenue": 7000 + i, "commission": 700 + i}},
			{collections.Coupons, map[string]any{"code": m("coupon"), "affiliate": owner.id, "program": p, "active": true}},
			{collections.CodeAliases, map[string]any{"code": strings.ToLower(m("legacy_code")), "affiliate": owner.id, "source": "rewardful"}},
			{collections.WebhookDeliveries, map[string]any{"affiliate": owner.id, "event": "conversion.created", "event_id": m("event"),
				"url": "https://127.0.0.1:9/" + m("hook"), "payload": map[string]any{"id": m("payload")}, "status": "sent"}},
			{"tier_changes", map[string]any{"affiliate": owner.id, "to_tier": fx.TierP, "period": fmt.Sprintf("2025-%02d", i+1), "reason": m("reason"), "by": m("by")}},
			{"deliveries", map[string]any{"affiliate": owner.id, "email": aff.Email(), "template": "approved", "status": "sent",
				"idempotency_key": m("delivery"), "data": map[string]any{"note": m("data")}}},
			{"conversion_events", map[string]any{"conversion": conv.Id, "affiliate": owner.id, "program": p, "door": "system",
				"actor": m("actor"), "status_before": "approved", "status_after": "approved", "note": m("history")}},
			{collections.Feedback, map[string]any{"affiliate": owner.id, "program": p, "rating": 7, "comment": m("feedback")}},
			{core.CollectionNameAuthOrigins, map[string]any{"collectionRef": affiliates.Id, "recordRef": owner.id, "fingerprint": m("fingerprint")}},
			{core.CollectionNameExternalAuths, map[string]any{"collectionRef": affiliates.Id, "recordRef": owner.id, "provider": []string{"google", "github", "gitlab", "discord", "apple"}[i], "providerId": m("provider")}},
			{core.CollectionNameMFAs, map[string]any{"collectionRef": affiliates.Id, "recordRef": owner.id, "method": m("mfa")}},
			{core.CollectionNameOTPs, map[string]any{"collectionRef": affiliates.Id, "recordRef": owner.id, "password": m("otp"), "sentTo": m("sent-to")}},
		} {
			if _, err := pbatest.Save(app, seed.collection, seed.data); err != nil {
				return s, err
			}
		}
	}

	// The API keys of the matrix's roles (the last one revoked); nobody's rows.
	for _, role := range apiKeyRoles {
		scope, _ := strings.CutPrefix(role, "key:")
		scopes := []string{scope}
		if role == "key:revoked" {
			scopes = collections.AllAPIKeyScopes
		}
		sum := sha256.Sum256([]byte(matrixKey(role)))
		if _, err := pbatest.Save(app, collections.APIKeys, map[string]any{"name": mark + role, "prefix": matrixKey(role)[:12],
			"hash": hex.EncodeToString(sum[:]), "scopes": scopes, "revoked": role == "key:revoked"}); err != nil {
			return s, err
		}
	}

	// Rows of a program: program Q's (nobody in the matrix is in Q) and an inactive bonus of P.
	for _, seed := range []struct {
		collection string
		data       map[string]any
	}{
		{collections.Tiers, map[string]any{"program": fx.ProgramQ, "name": mark + "q-tier", "rank": 1, "min_revenue": 1, "commission_value": 1}},
		{"bonuses", map[string]any{"program": fx.ProgramP, "name": mark + "p-bonus", "min_conversions": 1, "amount": 100, "active": true}},
		{"bonuses", map[string]any{"program": fx.ProgramP, "name": mark + "p-planned-bonus", "min_conversions": 2, "amount": 100, "active": false}},
		{"bonuses", map[string]any{"program": fx.ProgramQ, "name": mark + "q-bonus", "min_conversions": 1, "amount": 100, "active": true}},
		// Promotional materials: P's and Q's, and P's that A and B do not see (a draft, Gold's).
		{collections.Assets, map[string]any{"program": fx.ProgramP, "kind": "text", "title": mark + "p-asset", "body": mark + "p-body {{.Link}} {{.Coupon}}", "active": true}},
		{collections.Assets, map[string]any{"program": fx.ProgramP, "kind": "text", "title": mark + "p-draft-asset", "body": mark + "p-draft", "active": false}},
		{collections.Assets, map[string]any{"program": fx.ProgramP, "kind": "social", "title": mark + "p-gold-asset", "body": mark + "p-gold", "active": true, "tiers": []string{fx.TierP}}},
		{collections.Assets, map[string]any{"program": fx.ProgramQ, "kind": "text", "title": mark + "q-asset", "body": mark + "q-body", "active": true}},
		// A campaign of P for everyone, and one for B alone (its name is B's marker).
		{"incentives", map[string]any{"program": fx.ProgramP, "name": mark + "p-incentive", "kind": "rate_boost", "value": 500, "eligibility": "all",
			"starts_at": now.Add(-time.Hour), "ends_at": now.Add(24 * time.Hour), "active": true}},
		{"incentives", map[string]any{"program": fx.ProgramP, "name": mark + "b1-incentive", "kind": "target_bonus", "target_kind": "sales", "target": 5,
			"bonus": 1000, "eligibility": "affiliates", "affiliates": []string{fx.B.ID}, "starts_at": now.Add(-time.Hour), "ends_at": now.Add(24 * time.Hour), "active": true}},
		// Nobody's rows.
		{collections.StripeEvents, map[string]any{"event_id": mark + "evt", "type": "checkout.session.completed", "outcome": mark + "outcome"}},
		{collections.StripePending, map[string]any{"kind": "refund", "payment_intent": mark + "pi", "amount_refunded": 1, "event_id": mark + "evt-pending"}},
		{collections.ProviderEvents, map[string]any{"provider": "paddle", "event_id": mark + "evt", "type": "transaction.completed", "outcome": mark + "outcome"}},
		{collections.ProviderRefunds, map[string]any{"provider": "shopify", "sale": mark + "order", "refund_id": mark + "refund", "amount": 1, "currency": "usd"}},
		{"stripe_disputes", map[string]any{"dispute_id": mark + "dispute", "charge": mark + "charge", "amount": 1}},
		{"stripe_attributions", map[string]any{"customer": mark + "cus", "click": mark + "click", "event_id": mark + "evt-attr"}},
		{"payout_runs", map[string]any{"program": fx.ProgramP, "scheduled_for": now, "trigger": "manual", "status": "done", "report": map[string]any{"note": mark + "run"}}},
		{"messages", map[string]any{"subject": mark + "subject", "body": mark + "body", "kind": "broadcast", "status": "draft"}},
		{"suppressions", map[string]any{"email": mark + "suppressed@fixture.test", "reason": "unsubscribe"}},
		{"mail_templates", map[string]any{"name": "approved", "subject": mark + "template", "html": "<p>Hi</p>", "text": "Hi"}},
		{collections.Leases, map[string]any{"name": mark + "lease", "holder": mark + "holder", "expires_at": now.Add(-time.Hour)}},
		{collections.Surveys, map[string]any{"name": mark + "survey", "question": mark + "question"}},
		{collections.PrivacyRequests, map[string]any{"kind": "export", "subject": mark + "subject", "by": mark + "by", "summary": map[string]any{"n": 1}}},
		{"inactive_redirects", map[string]any{"day": now.Format(time.DateOnly), "reason": "unknown_code", "count": 1, "link": mark + "gone"}},
		{"edge_door_batches", map[string]any{}},
		{"click_overflow", map[string]any{"hour": now, "ip_hash": mark + "ip", "flag": "rate", "clicks": 1, "link": mark + "flooded"}},
		{"users", map[string]any{"email": mark + "user@fixture.test", "password": pbatest.Password, "name": mark + "user"}},
	} {
		if _, err := pbatest.Save(app, seed.collection, seed.data); err != nil {
			return s, err
		}
	}
	// A merchant's endpoint (port 9 of loopback: nothing listens) and a delivery of it.
	endpoint, err := pbatest.Save(app, "webhooks", map[string]any{"url": "https://127.0.0.1:9/" + mark + "endpoint", "description": mark + "endpoint", "active": true})
	if err != nil {
		return s, err
	}
	_, err = pbatest.Save(app, collections.WebhookDeliveries, map[string]any{"webhook": endpoint.Id, "event": "sale.created", "event_id": mark + "msg",
		"url": "https://127.0.0.1:9/" + mark + "endpoint", "payload": map[string]any{"type": "sale.created", "data": map[string]any{"id": mark + "sale"}},
		"status": "sent", "response_body": mark + "answer"})
	return s, err
}
