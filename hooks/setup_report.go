package hooks

import (
	"net/http"
	"slices"

	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/urlpolicy"
)

// setupReport answers GET /api/pba/config: what the back office's setup checklist needs to
// know about this server's configuration. It says whether each secret is set, never its value.
type setupReport struct {
	cfg Config
}

func newSetupReport(cfg Config) *setupReport { return &setupReport{cfg: cfg} }

func (s *setupReport) handle(re *core.RequestEvent) error {
	cfg := s.cfg
	settings := re.App.Settings()
	sender := mailProvider(re.App, cfg.ResendAPIKey != "")
	webhookURL := ""
	if cfg.PublicURL != "" {
		webhookURL = cfg.PublicURL + stripeWebhookPath
	}

	records, err := re.App.FindAllRecords(collections.Programs)
	if err != nil {
		return re.InternalServerError("", err)
	}
	programs := make([]map[string]any, 0, len(records))
	for _, p := range records {
		domains := p.GetStringSlice(collections.ProgramAllowedDomains)
		destination := p.GetString(collections.ProgramDestination)
		host := ""
		if d, err := urlpolicy.NormalizeDomain(destination); err == nil {
			host = d
		}
		placeholder := len(domains) == 0 || slices.ContainsFunc(domains, urlpolicy.Placeholder) || urlpolicy.Placeholder(host)
		programs = append(programs, map[string]any{
			"id": p.Id, "name": p.GetString(collections.FieldName), "active": p.GetBool(collections.ProgramActive),
			"destination": destination, "allowed_domains": domains, "placeholder_domains": placeholder,
		})
	}
	enabledRules := 0
	if settings.RateLimits.Enabled {
		enabledRules = len(settings.RateLimits.Rules)
	}
	return re.JSON(http.StatusOK, map[string]any{
		"public_url": cfg.PublicURL,
		"mail": map[string]any{
			"sender":         sender, // resend, smtp, sendmail or none (mail only logged)
			"from":           cfg.MailFrom,
			"smtp_host":      settings.SMTP.Host,
			"resend_webhook": cfg.ResendWebhookSecret != "",
		},
		"stripe": map[string]any{
			"secret_key":             cfg.StripeSecretKey != "",
			"webhook_secret":         cfg.StripeWebhookSecret != "",
			"connect_webhook_secret": cfg.StripeConnectWebhookSecret != "",
			"webhook_url":            webhookURL,
		},
		"programs":    programs,
		"rate_limits": map[string]any{"enabled": settings.RateLimits.Enabled, "rules": enabledRules},
		"backups":     map[string]any{"cron": settings.Backups.Cron, "s3": settings.Backups.S3.Enabled},
		"ip_salt":     cfg.IPSalt != "",
	})
}
