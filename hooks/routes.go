package hooks

import (
	"github.com/pocketbase/pocketbase/apis"
	"github.com/pocketbase/pocketbase/core"
	"github.com/pocketbase/pocketbase/tools/hook"
	"github.com/pocketbase/pocketbase/tools/router"

	"github.com/pbaffiliate/pbaffiliate/collections"
)

// routes are the capabilities that answer pbaffiliate's HTTP routes. A test may fill in only
// the ones it drives: bind takes method values, which a nil capability does not dereference.
type routes struct {
	tracking    *tracker
	conversions *conversionService
	stripe      *stripeWebhook
	paddle      *providerWebhook
	lemon       *providerWebhook
	shopify     *providerWebhook
	connect     *connectOnboarding
	commissions *commissionEngine
	payouts     *payoutEngine
	unsub       *unsubscribes
	mailOutbox  *mailOutbox
	setup       *setupReport
	mailPreview *mailPreview
	assets      *assetService
	surveys     *surveyMails
	portal      *portalTerms
	metrics     *metrics
	webhooks    *webhookSender
	privacy     *privacy
	keys        *apiKeys
	cfg         Config
}

// bind lists every route pbaffiliate adds, with who may call it. Handlers live with their
// capability; the records and realtime APIs are PocketBase's own, guarded by the collections'
// rules and guard.go. docs/http-api.md documents each route.
func (r routes) bind(rt *router.Router[*core.RequestEvent]) {
	superuser := apis.RequireSuperuserAuth()
	affiliate := apis.RequireAuth(collections.Affiliates)
	affiliateOrSuperuser := apis.RequireAuth(core.CollectionNameSuperusers, collections.Affiliates)

	// API keys (apikeys.go): authenticate decides every request that carries one; a route
	// accepts keys holding one scope when bound with scoped(route, scope, its own auth), and
	// refuses them otherwise.
	keys := r.keys
	if keys == nil {
		keys = newAPIKeys()
	}
	rt.Bind(keys.authenticate())
	scoped := func(method, path, scope string, action func(*core.RequestEvent) error, auth *hook.Handler[*core.RequestEvent]) *router.Route[*core.RequestEvent] {
		return rt.Route(method, path, action).Bind(keys.scoped(method+" "+path, scope, auth))
	}

	// Visitors: tracked links and track.js clicks. Never in the activity log when they succeed
	// (a log row per click would double the write load).
	rt.GET("/r/{code}", r.tracking.handleRedirect).Bind(apis.SkipSuccessActivityLog())
	rt.GET("/r/{code}/{$}", r.tracking.handleRedirect).Bind(apis.SkipSuccessActivityLog()) // a trailing slash is the same link
	// An old platform's link forwarded here: /r/?via=CODE (also ref, fpr, fp_ref, tap_a, aff).
	rt.GET("/r/{$}", r.tracking.handleRedirect).Bind(apis.SkipSuccessActivityLog())
	rt.POST("/api/pba/clicks", r.tracking.handleTrackClick).Bind(apis.SkipSuccessActivityLog(), apis.BodyLimit(8<<10))

	// Merchants' servers: the handlers check the program's postback secret (or a superuser),
	// and Stripe's signature.
	scoped("POST", "/api/pba/conversions", collections.ScopeSalesWrite, r.conversions.handleAPI, nil).Bind(apis.BodyLimit(maxConversionBody))
	// The update form: a change of a recorded sale (status, cumulative refund), POST or PATCH.
	scoped("POST", "/api/pba/conversions/{source}/{external_id...}", collections.ScopeSalesWrite, r.conversions.handleUpdate, nil).Bind(apis.BodyLimit(maxUpdateBody))
	scoped("PATCH", "/api/pba/conversions/{source}/{external_id...}", collections.ScopeSalesWrite, r.conversions.handleUpdate, nil).Bind(apis.BodyLimit(maxUpdateBody))
	scoped("GET", "/api/pba/postback", collections.ScopeSalesWrite, r.conversions.handlePostback, nil)
	rt.POST(stripeWebhookPath, r.stripe.handle).Bind(apis.BodyLimit(stripeWebhookBodyLimit))
	// Other billing providers' sales and refunds: each handler checks its provider's signature.
	rt.POST(paddleWebhookPath, r.paddle.handle).Bind(apis.BodyLimit(providerWebhookBodyLimit))
	rt.POST(lemonSqueezyWebhookPath, r.lemon.handle).Bind(apis.BodyLimit(providerWebhookBodyLimit))
	rt.POST(shopifyWebhookPath, r.shopify.handle).Bind(apis.BodyLimit(providerWebhookBodyLimit))

	// Mail: one-click unsubscribe (the signed token is the auth) and Resend's delivery events
	// (Svix signature).
	rt.GET("/api/pba/unsubscribe", r.unsub.handleUnsubscribePage)
	rt.POST("/api/pba/unsubscribe", r.unsub.handleUnsubscribe).Bind(apis.BodyLimit(4 << 10))
	rt.POST("/api/pba/resend/webhook", r.mailOutbox.handleResendWebhook).Bind(apis.BodyLimit(resendWebhookMaxBody))
	// Survey mail's one-click ratings (the signed token is the auth) and the comment form.
	rt.GET("/api/pba/survey", r.surveys.handleSurveyPage)
	rt.POST("/api/pba/survey", r.surveys.handleSurveyComment).Bind(apis.BodyLimit(16 << 10))

	// Affiliates (their own figures) and superusers (anyone's).
	scoped("GET", "/api/pba/stats", collections.ScopeStatsRead, handleStats, affiliateOrSuperuser)
	scoped("GET", "/api/pba/balance", collections.ScopeStatsRead, handleBalance, affiliateOrSuperuser)
	scoped("GET", "/api/pba/breakdown", collections.ScopeStatsRead, handleBreakdown, affiliateOrSuperuser) // country, referrer: superusers
	rt.POST("/api/pba/connect/onboard", r.connect.handle).Bind(affiliate)
	// Promotional materials rendered for an approved affiliate; a superuser previews as one (?affiliate=).
	rt.GET("/api/pba/assets", r.assets.handleList).Bind(affiliateOrSuperuser)
	rt.GET("/api/pba/assets/{id}", r.assets.handleView).Bind(affiliateOrSuperuser)
	rt.GET("/api/pba/incentives", handleIncentives).Bind(affiliate) // own campaigns and progress

	// The portal: a program's public terms for its apply page, an affiliate's own terms.
	rt.GET("/api/pba/apply/{slug}", r.portal.handleApply)
	rt.GET("/api/pba/terms", r.portal.handleTerms).Bind(affiliate)

	// Superusers.
	scoped("GET", "/api/pba/leaderboard", collections.ScopeStatsRead, handleLeaderboard, superuser)
	scoped("GET", "/api/pba/owed", collections.ScopeStatsRead, handleOwed, superuser)
	rt.GET("/api/pba/ledger/check", handleLedgerCheck).Bind(superuser)
	rt.POST("/api/pba/commissions/run", r.commissions.handleRun).Bind(superuser)
	rt.POST("/api/pba/tiers/evaluate", r.commissions.handleEvaluateTiers).Bind(superuser)
	scoped("GET", "/api/pba/payouts/preview", collections.ScopePayoutsRead, r.payouts.handlePreview, superuser)
	rt.POST("/api/pba/payouts/run", r.payouts.handleRun).Bind(superuser)
	scoped("GET", "/api/pba/export/payouts.csv", collections.ScopePayoutsRead, handleManualPayoutsCSV, superuser)
	rt.GET("/api/pba/programs/schedule", handleSchedule).Bind(superuser)
	rt.GET("/api/pba/config", r.setup.handle).Bind(superuser)
	rt.POST("/api/pba/messages/preview", r.mailPreview.handle).Bind(superuser, apis.BodyLimit(256<<10))
	rt.POST("/api/pba/assets/{id}/announce", r.assets.handleAnnounce).Bind(superuser)
	rt.GET("/api/pba/feedback/summary", handleFeedbackSummary).Bind(superuser)
	// Outgoing webhooks (the merchant's endpoints; webhook_endpoints.go): a test event, a re-send.
	rt.POST("/api/pba/webhooks/{id}/test", r.webhooks.handleTest).Bind(superuser)
	rt.POST("/api/pba/webhooks/{id}/deliveries/{delivery}/resend", r.webhooks.handleResend).Bind(superuser)
	// Personal data (GDPR, privacy*.go): an affiliate's export and erasure, a visitor's clicks
	// erased; each recorded in privacy_requests. The visitor id stays out of the request log.
	rt.GET("/api/pba/affiliates/{id}/export", r.privacy.handleExport).Bind(superuser)
	rt.POST("/api/pba/affiliates/{id}/erase", r.privacy.handleErase).Bind(superuser, apis.BodyLimit(4<<10))
	rt.POST("/api/pba/visitors/{visitor}/erase", r.privacy.handleVisitorErase).Bind(superuser, apis.SkipSuccessActivityLog())
	for name, spec := range exportSpecs() { // affiliates, conversions, commissions
		scoped("GET", "/api/pba/export/"+name+".csv", exportScopes[name], exportHandler(name, spec), superuser)
	}

	// The merchant API (merchant_api.go): plain JSON for a merchant's server holding an API key
	// of the scope (or a superuser); API keys are made by superusers only, and shown once.
	scoped("GET", "/api/pba/sales", collections.ScopeSalesRead, handleSales, superuser)
	scoped("GET", "/api/pba/affiliates", collections.ScopeAffiliatesRead, handleAffiliatesList, superuser)
	scoped("GET", "/api/pba/affiliates/{id}", collections.ScopeAffiliatesRead, handleAffiliateView, superuser)
	scoped("POST", "/api/pba/affiliates", collections.ScopeAffiliatesWrite, handleAffiliateCreate, superuser).Bind(apis.BodyLimit(maxAffiliateBody))
	scoped("PATCH", "/api/pba/affiliates/{id}", collections.ScopeAffiliatesWrite, handleAffiliateUpdate, superuser).Bind(apis.BodyLimit(maxAffiliateBody))
	scoped("GET", "/api/pba/payouts", collections.ScopePayoutsRead, handlePayoutsList, superuser)
	rt.POST("/api/pba/api-keys", keys.handleCreate).Bind(superuser, apis.BodyLimit(4<<10))
	// This API's OpenAPI 3.1 document (openapi.go): anyone, cacheable.
	rt.GET("/api/pba/openapi.json", handleOpenAPI)

	// Prometheus: a superuser or the bearer of PBA_METRICS_TOKEN (metrics.go).
	if r.metrics != nil {
		rt.Bind(r.metrics.countRefusals())
		rt.GET("/api/pba/metrics", r.metrics.handle(r.cfg.MetricsToken)).Bind(apis.SkipSuccessActivityLog())
	}
}
