package collections

// API keys of the merchant's servers (migration 1795481700_api_keys, hooks/apikeys.go).
const APIKeys = "api_keys"

// API key fields.
const (
	APIKeyName      = "name"
	APIKeyPrefix    = "prefix"
	APIKeyHash      = "hash"
	APIKeyScopes    = "scopes"
	APIKeyLastUsed  = "last_used"
	APIKeyRevoked   = "revoked"
	APIKeyRevokedAt = "revoked_at"
	APIKeyCreatedBy = "created_by"
)

// The scopes an API key may hold: what a route bound to one of them lets the key do.
const (
	ScopeSalesWrite      = "sales:write"
	ScopeSalesRead       = "sales:read"
	ScopeAffiliatesRead  = "affiliates:read"
	ScopeAffiliatesWrite = "affiliates:write"
	ScopeStatsRead       = "stats:read"
	ScopePayoutsRead     = "payouts:read"
)

// AllAPIKeyScopes lists every scope, in the order the back office shows them.
var AllAPIKeyScopes = []string{ScopeSalesWrite, ScopeSalesRead, ScopeAffiliatesRead, ScopeAffiliatesWrite, ScopeStatsRead, ScopePayoutsRead}
