package hooks

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
)

// The OpenAPI 3.1 document of every /api/pba route, served at GET /api/pba/openapi.json.
// apiRoutes has one entry per route as bound in routes.go; TestOpenAPIDocument fails when a
// route is missing from it or it lists one that does not exist, and validates the document.
// To document a new route, add one entry (docs/http-api.md#openapi-document).

// Who may call a route: the document's security schemes (openAPISecuritySchemes).
const (
	authAnyone       = ""
	authSuperuser    = "superuserToken"
	authAffiliate    = "affiliateToken"
	authProgram      = "programSecret" // the program's postback secret as Bearer
	authPostbackKey  = "postbackKey"   // the same secret as ?key=
	authMetricsToken = "metricsToken"
)

// authKey is the security requirement of an API key holding scope.
func authKey(scope string) string { return "apiKey:" + scope }

// apiRoute documents one route.
type apiRoute struct {
	Route   string   // "METHOD /pattern" exactly as bound in routes.go
	Tag     string   // the group it is listed under
	Summary string   // one line
	Auth    []string // any one of these is enough (authAnyone: no credentials)
	Query   []string // query parameters, described in openAPIQuery
	Body    string   // component schema of the JSON body ("" none)
	OK      int      // the success status (200 when 0)
	Answer  string   // component schema of the success answer, or a media type with a slash ("" a JSON object)
	Errors  []int    // the documented error statuses (answered with the Error schema)
}

// Groups of routes.
const (
	tagTracking  = "Tracking"
	tagSales     = "Sales"
	tagMerchant  = "Merchant API"
	tagReports   = "Reports"
	tagPayouts   = "Payouts"
	tagAffiliate = "Affiliates' portal"
	tagMail      = "Mail and surveys"
	tagWebhooks  = "Webhooks in"
	tagAdmin     = "Back office"
)

// apiRoutes lists every /api/pba route. One entry per route; keep routes.go's order.
var apiRoutes = []apiRoute{
	{Route: "POST /api/pba/clicks", Tag: tagTracking, Summary: "Record the click of a visitor who landed with ?via=CODE (track.js)",
		Auth: []string{authAnyone}, Body: "ClickBody", Answer: "ClickAnswer", Errors: []int{400, 404, 429, 503}},

	{Route: "POST /api/pba/conversions", Tag: tagSales, Summary: "Record a sale (exactly once per external_id)",
		Auth: []string{authProgram, authKey(collections.ScopeSalesWrite), authSuperuser}, Body: "ConversionCreate", OK: 201,
		Answer: "Conversion", Errors: []int{400, 401, 403, 409, 422, 503}},
	{Route: "POST /api/pba/conversions/{source}/{external_id...}", Tag: tagSales, Summary: "Report a change of a recorded sale: status, cumulative refund",
		Auth: []string{authProgram, authKey(collections.ScopeSalesWrite), authSuperuser}, Body: "ConversionUpdate", Answer: "ConversionUpdated", Errors: []int{400, 401, 403, 404}},
	{Route: "PATCH /api/pba/conversions/{source}/{external_id...}", Tag: tagSales, Summary: "The same as the POST form",
		Auth: []string{authProgram, authKey(collections.ScopeSalesWrite), authSuperuser}, Body: "ConversionUpdate", Answer: "ConversionUpdated", Errors: []int{400, 401, 403, 404}},
	{Route: "GET /api/pba/postback", Tag: tagSales, Summary: "Record or update a sale by URL (decimal amounts)",
		Auth:   []string{authPostbackKey, authKey(collections.ScopeSalesWrite)},
		Query:  []string{"key", "txid", "amount", "currency", "click_id", "affiliate_code", "coupon", "status", "refund", "updated_at", "sequence", "customer", "occurred_at"},
		Answer: "Conversion", Errors: []int{400, 401, 403, 404, 409, 422, 503}},
	{Route: "POST /api/pba/stripe/webhook", Tag: tagWebhooks, Summary: "Stripe's events, verified by their Stripe-Signature header",
		Auth: []string{authAnyone}, Answer: "WebhookReceived", Errors: []int{400, 500, 503}},
	{Route: "POST /api/pba/paddle/webhook", Tag: tagWebhooks, Summary: "Paddle Billing's events, verified by their Paddle-Signature header",
		Auth: []string{authAnyone}, Answer: "WebhookReceived", Errors: []int{400, 500, 503}},
	{Route: "POST /api/pba/lemonsqueezy/webhook", Tag: tagWebhooks, Summary: "Lemon Squeezy's events, verified by their X-Signature header",
		Auth: []string{authAnyone}, Answer: "WebhookReceived", Errors: []int{400, 500, 503}},
	{Route: "POST /api/pba/shopify/webhook", Tag: tagWebhooks, Summary: "Shopify's orders/paid and refunds/create, verified by their X-Shopify-Hmac-Sha256 header",
		Auth: []string{authAnyone}, Answer: "WebhookReceived", Errors: []int{400, 500, 503}},

	{Route: "GET /api/pba/unsubscribe", Tag: tagMail, Summary: "The unsubscribe confirmation page of a signed link",
		Auth: []string{authAnyone}, Query: []string{"token"}, Answer: "text/html", Errors: []int{400}},
	{Route: "POST /api/pba/unsubscribe", Tag: tagMail, Summary: "One-click unsubscribe (RFC 8058) of a signed link",
		Auth: []string{authAnyone}, Query: []string{"token"}, Answer: "text/html", Errors: []int{400}},
	{Route: "POST /api/pba/resend/webhook", Tag: tagWebhooks, Summary: "Resend's delivery events, Svix-signed",
		Auth: []string{authAnyone}, Errors: []int{400, 503}},
	{Route: "GET /api/pba/survey", Tag: tagMail, Summary: "A survey mail's one-click rating (signed link); answers a page",
		Auth: []string{authAnyone}, Query: []string{"token", "score"}, Answer: "text/html", Errors: []int{400, 404}},
	{Route: "POST /api/pba/survey", Tag: tagMail, Summary: "The rating with a comment (form field comment)",
		Auth: []string{authAnyone}, Query: []string{"token", "score"}, Answer: "text/html", Errors: []int{400, 404}},

	{Route: "GET /api/pba/stats", Tag: tagReports, Summary: "Clicks, sales, revenue and commission per period (an affiliate: its own)",
		Auth:  []string{authSuperuser, authKey(collections.ScopeStatsRead), authAffiliate},
		Query: []string{"from", "to", "interval", "tz", "compare", "program", "affiliate"}, Answer: "Stats", Errors: []int{400, 401, 403}},
	{Route: "GET /api/pba/balance", Tag: tagReports, Summary: "An affiliate's commissions by status and currency",
		Auth: []string{authSuperuser, authKey(collections.ScopeStatsRead), authAffiliate}, Query: []string{"affiliate"}, Errors: []int{400, 401, 403}},
	{Route: "GET /api/pba/breakdown", Tag: tagReports, Summary: "Figures by link, sub, country or referrer",
		Auth:  []string{authSuperuser, authKey(collections.ScopeStatsRead), authAffiliate},
		Query: []string{"dim", "from", "to", "program", "affiliate", "limit"}, Errors: []int{400, 401, 403}},
	{Route: "POST /api/pba/connect/onboard", Tag: tagAffiliate, Summary: "Stripe Connect onboarding link of the signed-in affiliate",
		Auth: []string{authAffiliate}, Errors: []int{401, 403, 502, 503}},
	{Route: "GET /api/pba/assets", Tag: tagAffiliate, Summary: "Promotional materials rendered for an affiliate",
		Auth: []string{authAffiliate, authSuperuser}, Query: []string{"affiliate"}, Errors: []int{400, 401, 403}},
	{Route: "GET /api/pba/assets/{id}", Tag: tagAffiliate, Summary: "One promotional material rendered for an affiliate",
		Auth: []string{authAffiliate, authSuperuser}, Query: []string{"affiliate"}, Errors: []int{400, 401, 403, 404}},
	{Route: "GET /api/pba/incentives", Tag: tagAffiliate, Summary: "The affiliate's active and upcoming campaigns with its progress",
		Auth: []string{authAffiliate}, Errors: []int{401, 403}},
	{Route: "GET /api/pba/apply/{slug}", Tag: tagAffiliate, Summary: "A program's public terms and application questions",
		Auth: []string{authAnyone}, Errors: []int{404}},
	{Route: "GET /api/pba/terms", Tag: tagAffiliate, Summary: "The signed-in affiliate's terms, rate and next payout",
		Auth: []string{authAffiliate}, Errors: []int{401, 403}},

	{Route: "GET /api/pba/leaderboard", Tag: tagReports, Summary: "Affiliates ranked by a metric",
		Auth:  []string{authSuperuser, authKey(collections.ScopeStatsRead)},
		Query: []string{"from", "to", "program", "currency", "by", "limit", "min_clicks"}, Errors: []int{400, 401, 403}},
	{Route: "GET /api/pba/owed", Tag: tagReports, Summary: "Pending and payable commissions per currency",
		Auth: []string{authSuperuser, authKey(collections.ScopeStatsRead)}, Query: []string{"program"}, Errors: []int{400, 401, 403}},
	{Route: "GET /api/pba/ledger/check", Tag: tagAdmin, Summary: "Check the ledger's invariants",
		Auth: []string{authSuperuser}, Query: []string{"affiliate"}, Errors: []int{401, 403}},
	{Route: "POST /api/pba/commissions/run", Tag: tagPayouts, Summary: "One commission engine pass now",
		Auth: []string{authSuperuser}, Errors: []int{401, 403}},
	{Route: "POST /api/pba/tiers/evaluate", Tag: tagPayouts, Summary: "Tier moves for a month",
		Auth: []string{authSuperuser}, Query: []string{"period"}, Errors: []int{400, 401, 403}},
	{Route: "GET /api/pba/payouts/preview", Tag: tagPayouts, Summary: "What a payout run would pay now (changes nothing)",
		Auth: []string{authSuperuser, authKey(collections.ScopePayoutsRead)}, Query: []string{"program"}, Errors: []int{400, 401, 403}},
	{Route: "POST /api/pba/payouts/run", Tag: tagPayouts, Summary: "Run payouts now",
		Auth: []string{authSuperuser}, Query: []string{"program"}, Errors: []int{400, 401, 403, 500}},
	{Route: "GET /api/pba/export/payouts.csv", Tag: tagPayouts, Summary: "The pending manual payouts as a PayPal or Wise batch file",
		Auth: []string{authSuperuser, authKey(collections.ScopePayoutsRead)}, Query: []string{"format"}, Answer: "text/csv", Errors: []int{400, 401, 403}},
	{Route: "GET /api/pba/programs/schedule", Tag: tagAdmin, Summary: "Check a payout schedule and its next runs",
		Auth: []string{authSuperuser}, Query: []string{"spec"}, Errors: []int{400, 401, 403}},
	{Route: "GET /api/pba/config", Tag: tagAdmin, Summary: "What the setup checklist needs (never a secret's value)",
		Auth: []string{authSuperuser}, Errors: []int{401, 403}},
	{Route: "POST /api/pba/messages/preview", Tag: tagAdmin, Summary: "Render a broadcast or template for an affiliate",
		Auth: []string{authSuperuser}, Errors: []int{400, 401, 403}},
	{Route: "POST /api/pba/assets/{id}/announce", Tag: tagAdmin, Summary: "Announce a promotional material by broadcast",
		Auth: []string{authSuperuser}, OK: 201, Errors: []int{400, 401, 403, 404}},
	{Route: "GET /api/pba/feedback/summary", Tag: tagAdmin, Summary: "NPS, distribution, trend and comments",
		Auth: []string{authSuperuser}, Query: []string{"program", "tier", "survey", "from", "to"}, Errors: []int{400, 401, 403}},
	{Route: "GET /api/pba/export/affiliates.csv", Tag: tagMerchant, Summary: "Affiliates as CSV",
		Auth: []string{authSuperuser, authKey(exportScopes["affiliates"])}, Query: []string{"program", "status", "from", "to"}, Answer: "text/csv", Errors: []int{400, 401, 403}},
	{Route: "GET /api/pba/export/conversions.csv", Tag: tagMerchant, Summary: "Sales as CSV",
		Auth: []string{authSuperuser, authKey(exportScopes["conversions"])}, Query: []string{"program", "status", "from", "to"}, Answer: "text/csv", Errors: []int{400, 401, 403}},
	{Route: "GET /api/pba/export/commissions.csv", Tag: tagMerchant, Summary: "Commissions as CSV",
		Auth: []string{authSuperuser, authKey(exportScopes["commissions"])}, Query: []string{"program", "status", "from", "to"}, Answer: "text/csv", Errors: []int{400, 401, 403}},

	{Route: "GET /api/pba/sales", Tag: tagMerchant, Summary: "Sales, newest first, filtered and paged",
		Auth:  []string{authSuperuser, authKey(collections.ScopeSalesRead)},
		Query: []string{"affiliate", "program", "status", "source", "from", "to", "limit", "cursor"}, Answer: "SalePage", Errors: []int{400, 401, 403}},
	{Route: "GET /api/pba/affiliates", Tag: tagMerchant, Summary: "Affiliates, newest first, filtered and paged",
		Auth:  []string{authSuperuser, authKey(collections.ScopeAffiliatesRead)},
		Query: []string{"program", "status", "tier", "code", "email", "from", "to", "limit", "cursor"}, Answer: "AffiliatePage", Errors: []int{400, 401, 403}},
	{Route: "GET /api/pba/affiliates/{id}", Tag: tagMerchant, Summary: "One affiliate",
		Auth: []string{authSuperuser, authKey(collections.ScopeAffiliatesRead)}, Answer: "Affiliate", Errors: []int{401, 403, 404}},
	{Route: "POST /api/pba/affiliates", Tag: tagMerchant, Summary: "Create an affiliate (as the records API would, with its mails)",
		Auth: []string{authSuperuser, authKey(collections.ScopeAffiliatesWrite)}, Body: "AffiliateWrite", OK: 201, Answer: "Affiliate", Errors: []int{400, 401, 403}},
	{Route: "PATCH /api/pba/affiliates/{id}", Tag: tagMerchant, Summary: "Approve, reject, suspend, change the tier or profile of an affiliate",
		Auth: []string{authSuperuser, authKey(collections.ScopeAffiliatesWrite)}, Body: "AffiliateWrite", Answer: "Affiliate", Errors: []int{400, 401, 403, 404}},
	{Route: "GET /api/pba/payouts", Tag: tagMerchant, Summary: "Payouts, newest first, filtered and paged",
		Auth:  []string{authSuperuser, authKey(collections.ScopePayoutsRead)},
		Query: []string{"affiliate", "program", "status", "from", "to", "limit", "cursor"}, Answer: "PayoutPage", Errors: []int{400, 401, 403}},
	{Route: "POST /api/pba/api-keys", Tag: tagAdmin, Summary: "Create an API key; the answer is the only time the key is shown",
		Auth: []string{authSuperuser}, Body: "APIKeyCreate", OK: 201, Answer: "APIKeyCreated", Errors: []int{400, 401, 403}},
	{Route: "POST /api/pba/webhooks/{id}/test", Tag: tagAdmin, Summary: "Send a webhook.test event to one of the merchant's endpoints",
		Auth: []string{authSuperuser}, OK: 201, Errors: []int{400, 401, 403, 404}},
	{Route: "POST /api/pba/webhooks/{id}/deliveries/{delivery}/resend", Tag: tagAdmin, Summary: "Send one of an endpoint's deliveries again",
		Auth: []string{authSuperuser}, Errors: []int{401, 403, 404, 409}},
	{Route: "GET /api/pba/affiliates/{id}/export", Tag: tagAdmin, Summary: "Everything held about an affiliate, as a JSON file (GDPR)",
		Auth: []string{authSuperuser}, Errors: []int{401, 403, 404}},
	{Route: "POST /api/pba/affiliates/{id}/erase", Tag: tagAdmin, Summary: "Erase an affiliate's personal data; the ledger's ids and amounts stay (body: confirm)",
		Auth: []string{authSuperuser}, Errors: []int{400, 401, 403, 404}},
	{Route: "POST /api/pba/visitors/{visitor}/erase", Tag: tagAdmin, Summary: "Erase a visitor's clicks' personal data (the pba_vid cookie's value)",
		Auth: []string{authSuperuser}, Errors: []int{400, 401, 403}},
	{Route: "GET /api/pba/openapi.json", Tag: tagAdmin, Summary: "This document", Auth: []string{authAnyone}},

	{Route: "GET /api/pba/metrics", Tag: tagAdmin, Summary: "Prometheus metrics",
		Auth: []string{authSuperuser, authMetricsToken}, Answer: "text/plain", Errors: []int{401, 403}},
}

// openAPIQuery describes every query parameter a route lists: its JSON Schema and meaning.
var openAPIQuery = map[string][2]string{
	"affiliate":      {`{"type":"string"}`, "An affiliate's id."},
	"program":        {`{"type":"string"}`, "A program's id (some routes also take its slug)."},
	"status":         {`{"type":"string"}`, "Only records of this status."},
	"source":         {`{"type":"string","enum":["api","postback","stripe","paddle","lemonsqueezy","shopify","manual","coupon"]}`, "Only sales of this source."},
	"tier":           {`{"type":"string"}`, "A tier's id."},
	"survey":         {`{"type":"string"}`, "A survey's id."},
	"code":           {`{"type":"string"}`, "An affiliate's code."},
	"email":          {`{"type":"string","format":"email"}`, "An affiliate's email."},
	"from":           {`{"type":"string","format":"date"}`, "First UTC day, YYYY-MM-DD (inclusive)."},
	"to":             {`{"type":"string","format":"date"}`, "Last UTC day, YYYY-MM-DD (inclusive)."},
	"limit":          {`{"type":"integer","minimum":1}`, "Items per page (lists: 1–200, default 50)."},
	"cursor":         {`{"type":"string"}`, "next_cursor of the previous page, as it is."},
	"interval":       {`{"type":"string","enum":["day","week","month"]}`, "Period of the series."},
	"tz":             {`{"type":"string"}`, "IANA time zone of program-wide days."},
	"compare":        {`{"type":"string","enum":["previous"]}`, "Add the previous period's totals."},
	"dim":            {`{"type":"string","enum":["link","sub","country","referrer"]}`, "The dimension."},
	"currency":       {`{"type":"string"}`, "A lowercase ISO currency."},
	"by":             {`{"type":"string","enum":["commission","revenue","conversions","sales","clicks","cr","epc"]}`, "The ranking metric."},
	"min_clicks":     {`{"type":"integer","minimum":0}`, "Rank only affiliates with at least this many clicks."},
	"period":         {`{"type":"string"}`, "A month, YYYY-MM."},
	"format":         {`{"type":"string","enum":["paypal","wise"]}`, "The batch file's format."},
	"spec":           {`{"type":"string"}`, "A cron spec (CRON_TZ= prefix allowed)."},
	"token":          {`{"type":"string"}`, "The signed token of the mail's link."},
	"score":          {`{"type":"integer","minimum":0,"maximum":10}`, "The rating."},
	"key":            {`{"type":"string"}`, "The program's postback secret (omit it with an API key)."},
	"txid":           {`{"type":"string"}`, "The sale's external id."},
	"amount":         {`{"type":"string"}`, "A decimal amount such as 49.99."},
	"click_id":       {`{"type":"string"}`, "The click to credit."},
	"affiliate_code": {`{"type":"string"}`, "The affiliate to credit."},
	"coupon":         {`{"type":"string"}`, "A coupon of the program."},
	"refund":         {`{"type":"string"}`, "The cumulative refunded amount, a decimal."},
	"updated_at":     {`{"type":"string","format":"date-time"}`, "The sender's time of the change."},
	"sequence":       {`{"type":"integer","minimum":1}`, "A number that grows with each change of the sale."},
	"customer":       {`{"type":"string"}`, "The merchant's customer id."},
	"occurred_at":    {`{"type":"string","format":"date-time"}`, "When the sale happened."},
}

// openAPISchemas are the document's component schemas (JSON Schema 2020-12, as OpenAPI 3.1 has it).
const openAPISchemas = `{
 "Error": {"type":"object","required":["status","message","data"],"properties":{
   "status":{"type":"integer"},"message":{"type":"string"},
   "data":{"type":"object","description":"Per field: {\"<field>\": {\"code\", \"message\"}}.","additionalProperties":{"type":"object","properties":{"code":{"type":"string"},"message":{"type":"string"}}}}}},
 "Record": {"type":"object","required":["id","collectionId","collectionName"],"properties":{
   "id":{"type":"string"},"collectionId":{"type":"string"},"collectionName":{"type":"string"},
   "created":{"type":"string"},"updated":{"type":"string"}},"additionalProperties":true},
 "Conversion": {"allOf":[{"$ref":"#/components/schemas/Record"}],"description":"A sale (collection conversions), money in minor units.","properties":{
   "program":{"type":"string"},"affiliate":{"type":"string"},"link":{"type":"string"},"click":{"type":"string"},
   "source":{"type":"string"},"external_id":{"type":"string"},"amount":{"type":"integer"},"currency":{"type":"string"},
   "refunded_amount":{"type":"integer"},"status":{"type":"string","enum":["pending","approved","rejected","refunded"]},
   "customer":{"type":"string"},"occurred_at":{"type":"string"},"metadata":{}}},
 "ConversionUpdated": {"allOf":[{"$ref":"#/components/schemas/Conversion"}],"properties":{
   "update":{"type":"object","properties":{"outcome":{"type":"string","enum":["applied","unchanged","stale"]},"message":{"type":"string"}}}}},
 "ConversionCreate": {"type":"object","required":["external_id","amount","currency"],"additionalProperties":false,"properties":{
   "external_id":{"type":"string","maxLength":255},"amount":{"type":"integer","minimum":1,"maximum":100000000000},
   "currency":{"type":"string"},"click_id":{"type":"string"},"affiliate_code":{"type":"string"},"coupon":{"type":"string"},
   "customer":{"type":"string"},"customer_email":{"type":"string"},"occurred_at":{"type":"string","format":"date-time"},
   "status":{"type":"string","enum":["approved","pending","rejected"]},"subscription_id":{"type":"string"},
   "metadata":{"type":"object"},"program":{"type":"string","description":"Superusers and API keys: id or slug."},
   "imported":{"type":"boolean","description":"Superusers only."}}},
 "ConversionUpdate": {"type":"object","additionalProperties":false,"properties":{
   "status":{"type":"string","enum":["approved","pending","rejected","refunded"]},
   "refunded_amount":{"type":"integer","minimum":0,"description":"Cumulative, minor units."},
   "updated_at":{"type":"string","format":"date-time"},"sequence":{"type":"integer","minimum":1},
   "reason":{"type":"string","maxLength":200}}},
 "ClickBody": {"type":"object","additionalProperties":false,"properties":{
   "code":{"type":"string"},"sub":{"type":"string"},"referrer":{"type":"string"},"visitor":{"type":"string"}}},
 "ClickAnswer": {"type":"object","properties":{"click_id":{"type":["string","null"]},"visitor":{"type":"string"},
   "cookie_days":{"type":"integer"},"reason":{"type":"string"}}},
 "WebhookReceived": {"type":"object","properties":{"received":{"type":"boolean"},"outcome":{"type":"string"},"duplicate":{"type":"boolean"}}},
 "Metrics": {"type":"object","properties":{"currency":{"type":"string"},"clicks":{"type":"integer"},"unique_clicks":{"type":"integer"},
   "conversions":{"type":"integer"},"revenue":{"type":"integer"},"commission":{"type":"integer"},"cr":{"type":"number"},
   "unique_rate":{"type":"number"},"epc":{"type":"integer"},"aov":{"type":"integer"},"commission_formatted":{"type":"string"}}},
 "Stats": {"type":"object","properties":{"from":{"type":"string"},"to":{"type":"string"},"interval":{"type":"string"},
   "tz":{"type":"string"},"program":{"type":"string"},"affiliate":{"type":"string"},
   "series":{"type":"array","items":{"type":"object","properties":{"period":{"type":"string"},
     "metrics":{"type":"array","items":{"$ref":"#/components/schemas/Metrics"}}}}},
   "totals":{"type":"array","items":{"$ref":"#/components/schemas/Metrics"}}}},
 "Affiliate": {"allOf":[{"$ref":"#/components/schemas/Record"}],"description":"An affiliate as the records API shows it to a superuser, without hidden fields.","properties":{
   "name":{"type":"string"},"email":{"type":"string"},"program":{"type":"string"},"code":{"type":"string"},
   "status":{"type":"string","enum":["pending","approved","rejected","suspended"]},"tier":{"type":"string"},
   "commission_override":{"type":"number"},"payout_email":{"type":"string"},"tags":{},"notes":{"type":"string"},"timezone":{"type":"string"}}},
 "AffiliateWrite": {"type":"object","additionalProperties":false,"properties":{
   "name":{"type":"string"},"email":{"type":"string","format":"email","description":"Required on create."},"program":{"type":"string"},
   "status":{"type":"string","enum":["pending","approved","rejected","suspended"]},"tier":{"type":"string"},"code":{"type":"string"},
   "commission_override":{"type":"number"},"payout_email":{"type":"string"},"tags":{"type":"array","items":{"type":"string"}},
   "notes":{"type":"string"},"timezone":{"type":"string"}}},
 "Payout": {"allOf":[{"$ref":"#/components/schemas/Record"}],"properties":{
   "affiliate":{"type":"string"},"program":{"type":"string"},"amount":{"type":"integer"},"currency":{"type":"string"},
   "method":{"type":"string"},"status":{"type":"string","enum":["pending","processing","paid","failed","canceled"]},
   "reference":{"type":"string"},"paid_at":{"type":"string"}}},
 "SalePage": {"type":"object","required":["items","next_cursor"],"properties":{"items":{"type":"array","items":{"$ref":"#/components/schemas/Conversion"}},"next_cursor":{"type":"string","description":"Empty on the last page."}}},
 "AffiliatePage": {"type":"object","required":["items","next_cursor"],"properties":{"items":{"type":"array","items":{"$ref":"#/components/schemas/Affiliate"}},"next_cursor":{"type":"string"}}},
 "PayoutPage": {"type":"object","required":["items","next_cursor"],"properties":{"items":{"type":"array","items":{"$ref":"#/components/schemas/Payout"}},"next_cursor":{"type":"string"}}},
 "APIKeyCreate": {"type":"object","required":["name","scopes"],"additionalProperties":false,"properties":{
   "name":{"type":"string","maxLength":100},"scopes":{"type":"array","minItems":1,"uniqueItems":true,"items":{"$ref":"#/components/schemas/Scope"}}}},
 "APIKeyCreated": {"type":"object","required":["id","name","prefix","scopes","key"],"properties":{
   "id":{"type":"string"},"name":{"type":"string"},"prefix":{"type":"string"},"created":{"type":"string"},
   "scopes":{"type":"array","items":{"$ref":"#/components/schemas/Scope"}},
   "key":{"type":"string","pattern":"^pba_[A-Za-z0-9]{40}$","description":"Shown this once; only its SHA-256 is stored."}}},
 "Scope": {"type":"string","enum":["sales:write","sales:read","affiliates:read","affiliates:write","stats:read","payouts:read"]}
}`

// openAPISecuritySchemes are the credentials routes take.
const openAPISecuritySchemes = `{
 "superuserToken": {"type":"apiKey","in":"header","name":"Authorization","description":"A superuser's PocketBase auth token, as it is (POST /api/collections/_superusers/auth-with-password)."},
 "affiliateToken": {"type":"apiKey","in":"header","name":"Authorization","description":"An affiliate's PocketBase auth token (POST /api/collections/affiliates/auth-with-password)."},
 "apiKey": {"type":"http","scheme":"bearer","bearerFormat":"pba_…","description":"An API key made in the back office: Authorization: Bearer pba_…. The requirement lists the scope the key must hold; a route without an apiKey requirement refuses keys (403)."},
 "programSecret": {"type":"http","scheme":"bearer","description":"A program's postback secret: Authorization: Bearer <secret>. It acts on that program's sales only."},
 "postbackKey": {"type":"apiKey","in":"query","name":"key","description":"A program's postback secret in the query."},
 "metricsToken": {"type":"http","scheme":"bearer","description":"PBA_METRICS_TOKEN, when the server sets it."}
}`

var pathParam = regexp.MustCompile(`\{([a-z_]+)(\.\.\.)?\}`)

// openAPIPath is the document's path of a route pattern: {external_id...} is {external_id}.
func openAPIPath(pattern string) string { return strings.ReplaceAll(pattern, "...}", "}") }

// openAPIDocument builds the document from apiRoutes.
func openAPIDocument() ([]byte, error) {
	var schemas, schemes map[string]any
	if err := json.Unmarshal([]byte(openAPISchemas), &schemas); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(openAPISecuritySchemes), &schemes); err != nil {
		return nil, err
	}
	errorAnswer := func(code int) map[string]any {
		return map[string]any{"description": http.StatusText(code),
			"content": map[string]any{"application/json": map[string]any{"schema": map[string]any{"$ref": "#/components/schemas/Error"}}}}
	}
	paths := map[string]map[string]any{}
	var tags []string
	for _, r := range apiRoutes {
		method, pattern, _ := strings.Cut(r.Route, " ")
		op := map[string]any{"summary": r.Summary, "tags": []string{r.Tag},
			"operationId": strings.ToLower(method) + strings.NewReplacer("/api/pba", "", "/", "_", "{", "", "}", "", ".", "_", "-", "_").Replace(openAPIPath(pattern))}
		if !slices.Contains(tags, r.Tag) {
			tags = append(tags, r.Tag)
		}
		var params []any
		for _, m := range pathParam.FindAllStringSubmatch(pattern, -1) {
			params = append(params, map[string]any{"name": m[1], "in": "path", "required": true, "schema": map[string]any{"type": "string"}})
		}
		for _, q := range r.Query {
			d, ok := openAPIQuery[q]
			if !ok {
				return nil, fmt.Errorf("openapi: query parameter %q of %s is not in openAPIQuery", q, r.Route)
			}
			var schema any
			if err := json.Unmarshal([]byte(d[0]), &schema); err != nil {
				return nil, err
			}
			params = append(params, map[string]any{"name": q, "in": "query", "schema": schema, "description": d[1]})
		}
		if len(params) > 0 {
			op["parameters"] = params
		}
		if r.Body != "" {
			op["requestBody"] = map[string]any{"required": true, "content": map[string]any{"application/json": map[string]any{
				"schema": map[string]any{"$ref": "#/components/schemas/" + r.Body}}}}
		}
		var security []any
		for _, a := range r.Auth {
			switch scope, isKey := strings.CutPrefix(a, "apiKey:"); {
			case a == authAnyone:
				security = append(security, map[string]any{})
			case isKey:
				security = append(security, map[string]any{"apiKey": []string{scope}})
			default:
				security = append(security, map[string]any{a: []string{}})
			}
		}
		op["security"] = security
		ok := r.OK
		if ok == 0 {
			ok = http.StatusOK
		}
		var content map[string]any
		switch {
		case strings.Contains(r.Answer, "/"):
			content = map[string]any{r.Answer: map[string]any{"schema": map[string]any{"type": "string"}}}
		case r.Answer != "":
			content = map[string]any{"application/json": map[string]any{"schema": map[string]any{"$ref": "#/components/schemas/" + r.Answer}}}
		default:
			content = map[string]any{"application/json": map[string]any{"schema": map[string]any{"type": "object"}}}
		}
		responses := map[string]any{strconv.Itoa(ok): map[string]any{"description": http.StatusText(ok), "content": content}}
		for _, code := range r.Errors {
			responses[strconv.Itoa(code)] = errorAnswer(code)
		}
		op["responses"] = responses
		path := openAPIPath(pattern)
		if paths[path] == nil {
			paths[path] = map[string]any{}
		}
		paths[path][strings.ToLower(method)] = op
	}
	tagList := make([]any, len(tags))
	for i, t := range tags {
		tagList[i] = map[string]any{"name": t}
	}
	doc := map[string]any{
		"openapi": "3.1.0",
		"info": map[string]any{"title": "pbaffiliate", "version": "1",
			"description": "Every /api/pba route of pbaffiliate (docs/http-api.md). PocketBase's own records and realtime APIs are documented by PocketBase. " +
				"Money is integer minor units with a lowercase ISO currency; errors have PocketBase's shape and name the field at fault."},
		"servers":    []any{map[string]any{"url": "/"}},
		"tags":       tagList,
		"paths":      paths,
		"components": map[string]any{"schemas": schemas, "securitySchemes": schemes},
	}
	return json.MarshalIndent(doc, "", " ")
}

var openAPIOnce = sync.OnceValues(openAPIDocument)

// handleOpenAPI is GET /api/pba/openapi.json: the same bytes for everyone, cacheable.
func handleOpenAPI(e *core.RequestEvent) error {
	doc, err := openAPIOnce()
	if err != nil {
		return e.InternalServerError("", err)
	}
	e.Response.Header().Set("Cache-Control", "public, max-age=3600")
	return e.Blob(http.StatusOK, "application/json", doc)
}
