// Package hooks is pbaffiliate's behaviour on top of a PocketBase app: record hooks that keep
// the data model's invariants, routes of the public API, cron jobs and CLI commands.
//
// Another PocketBase app embeds the whole product with one call:
//
//	hooks.MustRegister(app, app.RootCmd, hooks.ConfigFromEnv())
package hooks

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/pocketbase/pocketbase/core"
	"github.com/spf13/cobra"

	// The schema is part of the product: registering the hooks brings the migrations with them.
	_ "github.com/pbaffiliate/pbaffiliate/migrations"
)

// Config is everything pbaffiliate reads from outside the database. Secrets live here and never
// in a collection, so a database export or a dashboard screenshot cannot leak them.
type Config struct {
	// PublicURL is the address visitors reach the server at (links, emails, Stripe return URLs).
	PublicURL string
	// FallbackURL is where /r/{code} sends the visitor of an unknown code (302, no click)
	// instead of the 404 page; empty keeps the page. Only this URL, never one a request names.
	FallbackURL string
	// IPSalt keys the HMAC that turns click IPs into ip_hash; the raw IP is never stored.
	IPSalt string

	// StripeSecretKey enables Stripe Connect payouts; empty means manual payouts.
	StripeSecretKey string
	// StripeWebhookSecret verifies POST /api/pba/stripe/webhook.
	StripeWebhookSecret string
	// StripeConnectWebhookSecret also verifies it: Stripe signs the events of connected
	// accounts (account.updated) with the secret of a separate Connect endpoint, which may
	// point at the same URL.
	StripeConnectWebhookSecret string
	// StripeAPIBase points the Stripe client at stripe-mock or a fake in tests.
	StripeAPIBase string

	// PaddleWebhookSecret, LemonSqueezyWebhookSecret and ShopifyWebhookSecret verify the billing
	// providers' webhooks (POST /api/pba/{paddle,lemonsqueezy,shopify}/webhook); an endpoint
	// without its secret answers 503.
	PaddleWebhookSecret       string
	LemonSqueezyWebhookSecret string
	ShopifyWebhookSecret      string

	// ResendAPIKey enables email through Resend; empty means PocketBase's mailer.
	ResendAPIKey string
	// ResendWebhookSecret verifies POST /api/pba/resend/webhook (Svix signature).
	ResendWebhookSecret string
	// ResendBaseURL points the Resend client at a fake in tests.
	ResendBaseURL string
	// MailFrom is the sender of pbaffiliate's emails ("Acme Partners <partners@acme.com>").
	MailFrom string

	// CountryHeader is a header a trusted proxy sets to the visitor's country (e.g. CF-IPCountry);
	// empty means clicks carry no country. The visitor IP itself follows the dashboard's
	// trusted-proxy settings.
	CountryHeader string
	// BotUserAgents are extra user-agent markers (besides the built-in list) that flag a click as bot.
	BotUserAgents []string
	// ClickRateLimit is how many clicks one IP (an IPv6 /64) may make on one link per minute before further
	// clicks are flagged "rate"; 0 disables the check.
	ClickRateLimit int
	// ClickIPCeiling is how many click rows one IP may store per UTC hour; past it, its flagged
	// clicks are counted in click_overflow instead of stored (POST /api/pba/clicks answers 429;
	// /r/ still redirects). Unflagged clicks are always stored, past it without user agent and
	// referrer. An IPv6 visitor counts by its /64. 0 turns the ceiling off.
	ClickIPCeiling int
	// ClickBatchSize, ClickBatchWait, ClickQueueSize and ClickEnqueueTimeout size the click
	// writer's group commit (rows per transaction, wait to fill a batch, queued requests, and
	// how long a request waits for room before 503).
	ClickBatchSize      int
	ClickBatchWait      time.Duration
	ClickQueueSize      int
	ClickEnqueueTimeout time.Duration

	// ClickRetentionDays is how long raw clicks are kept (pbaRetention); never less than the
	// longest attribution window, and never a click a sale is attributed to. stats_daily keeps
	// their counts for good. 0 keeps clicks forever.
	ClickRetentionDays int

	// StripeRateLimit caps Stripe API requests per second of the payout executor (Stripe allows
	// 25 in test mode, 100 live); 0 turns the limit off.
	StripeRateLimit int

	// MetricsToken, when set, lets GET /api/pba/metrics answer the bearer of this token (a
	// Prometheus server) as well as superusers.
	MetricsToken string

	// WebhookAllowPrivateNetworks lets affiliate webhooks reach loopback and private addresses;
	// off in production so a webhook_url cannot probe the server's own network.
	WebhookAllowPrivateNetworks bool

	// ReplicaURL turns on continuous replication of data.db with Litestream while the server
	// runs (file:///path, s3://bucket/path, sftp://host/path); empty means none.
	ReplicaURL string
	// ReplicaSyncInterval is how often new WAL frames are read and shipped to the replica
	// (DefaultReplicaSyncInterval when 0); the replication lag is about twice it.
	ReplicaSyncInterval time.Duration
}

// Defaults of the tunables, used where the environment leaves them unset.
const (
	DefaultClickRateLimit      = 30
	DefaultClickIPCeiling      = 1000
	DefaultClickBatchSize      = 256
	DefaultClickBatchWait      = 500 * time.Microsecond
	DefaultClickQueueSize      = 8192
	DefaultClickEnqueueTimeout = 2 * time.Second
	DefaultClickRetentionDays  = 400
	DefaultStripeRateLimit     = 25

	// DefaultGCPercent and DefaultMemoryLimit are the Go runtime settings the binary uses when
	// GOGC and GOMEMLIMIT are unset (main.tuneGC); benchmarks use them too, to measure what runs.
	DefaultGCPercent   = 400
	DefaultMemoryLimit = 1 << 30
)

// ConfigFromEnv reads the environment variables documented in the README.
func ConfigFromEnv() Config {
	return Config{
		PublicURL:                  strings.TrimRight(os.Getenv("PBA_PUBLIC_URL"), "/"),
		FallbackURL:                strings.TrimSpace(os.Getenv("PBA_FALLBACK_URL")),
		IPSalt:                     os.Getenv("PBA_IP_SALT"),
		StripeSecretKey:            os.Getenv("STRIPE_SECRET_KEY"),
		StripeWebhookSecret:        os.Getenv("STRIPE_WEBHOOK_SECRET"),
		StripeConnectWebhookSecret: os.Getenv("STRIPE_CONNECT_WEBHOOK_SECRET"),
		StripeAPIBase:              os.Getenv("STRIPE_API_BASE"),
		PaddleWebhookSecret:        os.Getenv("PADDLE_WEBHOOK_SECRET"),
		LemonSqueezyWebhookSecret:  os.Getenv("LEMONSQUEEZY_WEBHOOK_SECRET"),
		ShopifyWebhookSecret:       os.Getenv("SHOPIFY_WEBHOOK_SECRET"),
		ResendAPIKey:               os.Getenv("RESEND_API_KEY"),
		ResendWebhookSecret:        os.Getenv("RESEND_WEBHOOK_SECRET"),
		ResendBaseURL:              os.Getenv("RESEND_BASE_URL"),
		MailFrom:                   os.Getenv("PBA_MAIL_FROM"),
		CountryHeader:              os.Getenv("PBA_COUNTRY_HEADER"),
		BotUserAgents:              splitList(os.Getenv("PBA_BOT_USER_AGENTS")),
		ClickRateLimit:             envInt("PBA_CLICK_RATE_LIMIT", DefaultClickRateLimit),
		ClickIPCeiling:             envInt("PBA_CLICK_IP_CEILING", DefaultClickIPCeiling),
		ClickBatchSize:             envInt("PBA_CLICK_BATCH_SIZE", DefaultClickBatchSize),
		ClickBatchWait:             envDuration("PBA_CLICK_BATCH_WAIT", DefaultClickBatchWait),
		ClickQueueSize:             envInt("PBA_CLICK_QUEUE_SIZE", DefaultClickQueueSize),
		ClickEnqueueTimeout:        envDuration("PBA_CLICK_ENQUEUE_TIMEOUT", DefaultClickEnqueueTimeout),
		ClickRetentionDays:         envInt("PBA_CLICK_RETENTION_DAYS", DefaultClickRetentionDays),

		StripeRateLimit:             envInt("PBA_STRIPE_RATE_LIMIT", DefaultStripeRateLimit),
		WebhookAllowPrivateNetworks: os.Getenv("PBA_WEBHOOK_ALLOW_PRIVATE") == "true",
		MetricsToken:                os.Getenv("PBA_METRICS_TOKEN"),
		ReplicaURL:                  strings.TrimSpace(os.Getenv("PBA_REPLICA_URL")),
		ReplicaSyncInterval:         envDuration("PBA_REPLICA_SYNC_INTERVAL", DefaultReplicaSyncInterval),
	}
}

// withDefaults fills the tunables a Config built in code left at zero.
func (c Config) withDefaults() Config {
	if c.ClickBatchSize <= 0 {
		c.ClickBatchSize = DefaultClickBatchSize
	}
	if c.ClickQueueSize <= 0 {
		c.ClickQueueSize = DefaultClickQueueSize
	}
	if c.ClickEnqueueTimeout <= 0 {
		c.ClickEnqueueTimeout = DefaultClickEnqueueTimeout
	}
	return c
}

func splitList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// envInt and envDuration read a tunable; a malformed value falls back to the default and is
// reported by Config.validate through the raw value kept in the environment.
func envInt(name string, def int) int {
	v := strings.TrimSpace(os.Getenv(name))
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return -1 // rejected by validate
	}
	return n
}

func envDuration(name string, def time.Duration) time.Duration {
	v := strings.TrimSpace(os.Getenv(name))
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return -1 // rejected by validate
	}
	return d
}

// MustRegister wires pbaffiliate into app. It panics on a configuration that cannot work,
// so a misconfigured server fails at start instead of at the first sale.
//
// rootCmd, when not nil, gains the `demo`, `payouts`, `restore` and `import` commands (pass app.RootCmd, as
// migratecmd.MustRegister takes it); tests and embedders without a CLI pass nil.
func MustRegister(app core.App, rootCmd *cobra.Command, cfg Config) {
	if err := Register(app, rootCmd, cfg); err != nil {
		panic(fmt.Errorf("pbaffiliate: %w", err))
	}
}

// Register is MustRegister returning its error instead of panicking.
func Register(app core.App, rootCmd *cobra.Command, cfg Config) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	cfg = cfg.withDefaults()
	registerSecurity(app)
	registerWriteGuards(app)
	registerRollupGuards(app)
	registerPlainText(app)
	registerSaleTimes(app)
	registerPrograms(app)
	registerAffiliates(app)
	registerLinks(app)
	registerLinkDeletion(app)
	registerCoupons(app)
	registerCodeAliases(app)
	registerFeedback(app)
	tracking := registerTracking(app, cfg)
	conversions := newConversionService(app, tracking.live)
	registerDashboardSales(app, tracking.live)
	webhooks := registerWebhooks(app, cfg)
	commissions := registerCommissions(app, tracking.live)
	registerIncentives(app)
	payouts := registerPayouts(app, cfg)
	mail, err := registerMessaging(app, cfg)
	if err != nil {
		return fmt.Errorf("messaging: %w", err)
	}
	registerRetention(app, cfg)
	if _, err := registerReplication(app, cfg); err != nil {
		return err
	}
	assets := registerAssets(app, newMailContent(app, cfg.PublicURL))
	keys := registerAPIKeys(app)

	r := routes{
		tracking:    tracking,
		conversions: conversions,
		stripe:      newStripeWebhook(cfg, conversions),
		paddle:      newPaddleWebhook(cfg, conversions),
		lemon:       newLemonSqueezyWebhook(cfg, conversions),
		shopify:     newShopifyWebhook(cfg, conversions),
		connect:     newConnectOnboarding(cfg),
		commissions: commissions,
		payouts:     payouts,
		unsub:       mail.unsub,
		mailOutbox:  mail.outbox,
		setup:       newSetupReport(cfg),
		mailPreview: mail.preview,
		assets:      assets,
		surveys:     mail.surveys,
		portal:      &portalTerms{payouts: payouts},
		metrics:     metricsOf(app),
		webhooks:    webhooks,
		privacy:     newPrivacy(app, tracking),
		keys:        keys,
		cfg:         cfg,
	}
	app.OnServe().BindFunc(func(se *core.ServeEvent) error {
		r.bind(se.Router)
		return se.Next()
	})
	if rootCmd != nil {
		rootCmd.AddCommand(newDemoCommand(app, conversions, commissions, payouts, mail), newPayoutsCommand(app, payouts), NewRestoreCommand(),
			NewImportCommand(app))
	}
	return nil
}

func (c Config) validate() error {
	if c.PublicURL != "" && !strings.HasPrefix(c.PublicURL, "http://") && !strings.HasPrefix(c.PublicURL, "https://") {
		return fmt.Errorf("PBA_PUBLIC_URL must start with http:// or https://, got %q", c.PublicURL)
	}
	if err := validateFallbackURL(c.FallbackURL); err != nil {
		return err
	}
	for name, v := range map[string]int64{
		"PBA_CLICK_RATE_LIMIT": int64(c.ClickRateLimit), "PBA_CLICK_BATCH_SIZE": int64(c.ClickBatchSize),
		"PBA_CLICK_QUEUE_SIZE": int64(c.ClickQueueSize), "PBA_CLICK_BATCH_WAIT": int64(c.ClickBatchWait),
		"PBA_CLICK_ENQUEUE_TIMEOUT": int64(c.ClickEnqueueTimeout), "PBA_STRIPE_RATE_LIMIT": int64(c.StripeRateLimit),
		"PBA_CLICK_RETENTION_DAYS": int64(c.ClickRetentionDays), "PBA_CLICK_IP_CEILING": int64(c.ClickIPCeiling),
		"PBA_REPLICA_SYNC_INTERVAL": int64(c.ReplicaSyncInterval),
	} {
		if v < 0 {
			return fmt.Errorf("%s must be a non-negative number (durations like 2ms), got %q", name, os.Getenv(name))
		}
	}
	if c.ClickBatchSize > 2000 {
		return fmt.Errorf("PBA_CLICK_BATCH_SIZE must be at most 2000 (SQLite's parameter limit), got %d", c.ClickBatchSize)
	}
	return nil
}
