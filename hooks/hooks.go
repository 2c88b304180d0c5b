// Package hooks is pbaffiliate's behaviour on top of a PocketBase app: record hooks that keep
// the data model's invariants, routes of the public API, cron jobs and CLI commands.
//
// Another PocketBase app embeds the whole product with one call:
//
//	hooks.MustRegister(app, hooks.ConfigFromEnv())
package hooks

import (
	"fmt"
	"os"
	"strings"

	"github.com/pocketbase/pocketbase"
	"github.com/pocketbase/pocketbase/core"

	// The schema is part of the product: registering the hooks brings the migrations with them.
	_ "github.com/pbaffiliate/pbaffiliate/migrations"
)

// Config is everything pbaffiliate reads from outside the database. Secrets live here and never
// in a collection, so a database export or a dashboard screenshot cannot leak them.
type Config struct {
	// PublicURL is the address visitors reach the server at (links, emails, Stripe return URLs).
	PublicURL string
	// IPSalt keys the HMAC that turns click IPs into ip_hash; the raw IP is never stored.
	IPSalt string

	// StripeSecretKey enables Stripe Connect payouts; empty means manual payouts.
	StripeSecretKey string
	// StripeWebhookSecret verifies POST /api/pba/stripe/webhook.
	StripeWebhookSecret string
	// StripeAPIBase points the Stripe client at stripe-mock or a fake in tests.
	StripeAPIBase string

	// ResendAPIKey enables email through Resend; empty means PocketBase's mailer.
	ResendAPIKey string
	// ResendWebhookSecret verifies POST /api/pba/resend/webhook (Svix signature).
	ResendWebhookSecret string
	// ResendBaseURL points the Resend client at a fake in tests.
	ResendBaseURL string
	// MailFrom is the sender of pbaffiliate's emails ("Acme Partners <partners@acme.com>").
	MailFrom string
}

// ConfigFromEnv reads the environment variables documented in the README.
func ConfigFromEnv() Config {
	return Config{
		PublicURL:           strings.TrimRight(os.Getenv("PBA_PUBLIC_URL"), "/"),
		IPSalt:              os.Getenv("PBA_IP_SALT"),
		StripeSecretKey:     os.Getenv("STRIPE_SECRET_KEY"),
		StripeWebhookSecret: os.Getenv("STRIPE_WEBHOOK_SECRET"),
		StripeAPIBase:       os.Getenv("STRIPE_API_BASE"),
		ResendAPIKey:        os.Getenv("RESEND_API_KEY"),
		ResendWebhookSecret: os.Getenv("RESEND_WEBHOOK_SECRET"),
		ResendBaseURL:       os.Getenv("RESEND_BASE_URL"),
		MailFrom:            os.Getenv("PBA_MAIL_FROM"),
	}
}

// MustRegister wires pbaffiliate into app. It panics on a configuration that cannot work,
// so a misconfigured server fails at start instead of at the first sale.
func MustRegister(app core.App, cfg Config) {
	if err := Register(app, cfg); err != nil {
		panic(fmt.Errorf("pbaffiliate: %w", err))
	}
}

// Register is MustRegister returning its error instead of panicking.
func Register(app core.App, cfg Config) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	registerWriteGuards(app)
	registerPrograms(app)
	registerAffiliates(app)
	registerLinks(app)
	if pb, ok := app.(*pocketbase.PocketBase); ok {
		pb.RootCmd.AddCommand(newDemoCommand(app))
	}
	return nil
}

func (c Config) validate() error {
	if c.PublicURL != "" && !strings.HasPrefix(c.PublicURL, "http://") && !strings.HasPrefix(c.PublicURL, "https://") {
		return fmt.Errorf("PBA_PUBLIC_URL must start with http:// or https://, got %q", c.PublicURL)
	}
	return nil
}
