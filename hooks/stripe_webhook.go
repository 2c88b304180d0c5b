package hooks

import "github.com/pocketbase/pocketbase/core"

// registerStripeWebhook wires POST /api/pba/stripe/webhook (being written).
func registerStripeWebhook(app core.App, cfg Config, conversions *conversionService) {}
