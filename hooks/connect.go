package hooks

import (
	"net/http"
	"strings"

	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
)

// connectAccountKeyPrefix starts the idempotency key of an affiliate's Connect account: one key
// per affiliate, so two onboarding clicks (or a retry after a lost answer) create one account.
const connectAccountKeyPrefix = "pba_connect_"

// newConnectOnboarding serves POST /api/pba/connect/onboard, Stripe Connect Express onboarding for
// approved affiliates. Without STRIPE_SECRET_KEY the route answers 503: payouts are manual.
func newConnectOnboarding(cfg Config) *connectOnboarding {
	return &connectOnboarding{api: newStripeAPI(cfg), base: strings.TrimRight(cfg.PublicURL, "/")}
}

// connectOnboarding serves POST /api/pba/connect/onboard: api is nil without Stripe, base is
// where Stripe sends the affiliate back.
type connectOnboarding struct {
	api  stripeAPI
	base string
}

func (c *connectOnboarding) handle(re *core.RequestEvent) error {
	return connectOnboard(re, c.api, c.base)
}

// connectOnboard creates the affiliate's Express account once, makes Stripe its payout method
// and answers a fresh onboarding link (links are single-use and expire, so one per request).
// Stripe is called outside any transaction; the account id is saved right after it is known.
func connectOnboard(re *core.RequestEvent, api stripeAPI, base string) error {
	if api == nil {
		return re.Error(http.StatusServiceUnavailable, "Stripe payouts are not configured on this server.", nil)
	}
	if base == "" {
		return re.Error(http.StatusServiceUnavailable, "PBA_PUBLIC_URL must be set for Stripe onboarding to return to the portal.", nil)
	}
	affiliate, err := re.App.FindRecordById(collections.Affiliates, re.Auth.Id)
	if err != nil {
		return re.ForbiddenError("Only affiliates can connect a Stripe account.", nil)
	}
	if affiliate.GetString(collections.FieldStatus) != collections.AffiliateApproved {
		return re.ForbiddenError("Your affiliate account must be approved before you connect Stripe.", nil)
	}
	ctx := re.Request.Context()
	account := affiliate.GetString(collections.AffiliateStripeAccountID)
	if account == "" {
		account, err = api.CreateExpressAccount(ctx, affiliate.Email(), connectAccountKeyPrefix+affiliate.Id)
		if err != nil {
			re.App.Logger().Error("Stripe Connect account creation failed", "affiliate", affiliate.Id, "error", err)
			return re.Error(http.StatusBadGateway, "Stripe could not create your account; try again in a minute.", nil)
		}
	}
	if affiliate.GetString(collections.AffiliateStripeAccountID) != account ||
		affiliate.GetString(collections.AffiliatePayoutMethod) != collections.MethodStripe {
		affiliate.Set(collections.AffiliateStripeAccountID, account)
		affiliate.Set(collections.AffiliatePayoutMethod, collections.MethodStripe)
		if err := re.App.Save(affiliate); err != nil {
			return re.InternalServerError("", err)
		}
	}
	url, err := api.AccountLink(ctx, account, base+"/portal/?stripe=refresh", base+"/portal/?stripe=return")
	if err != nil {
		re.App.Logger().Error("Stripe account link failed", "affiliate", affiliate.Id, "account", account, "error", err)
		return re.Error(http.StatusBadGateway, "Stripe could not create the onboarding link; try again in a minute.", nil)
	}
	return re.JSON(http.StatusOK, map[string]string{"url": url, "account": account})
}
