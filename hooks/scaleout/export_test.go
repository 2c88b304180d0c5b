package scaleout

import "github.com/pbaffiliate/pbaffiliate/hooks/internal/edgewire"

// RateLimitsOf is the primary's rate-limit settings as node n last read them from the bucket.
func RateLimitsOf(n *Edge) *edgewire.RateLimits { return n.catalog.RateLimits() }
