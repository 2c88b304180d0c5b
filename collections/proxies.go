package collections

import (
	"fmt"

	"github.com/pocketbase/pocketbase/core"
	"github.com/pocketbase/pocketbase/tools/types"
)

// Affiliate is a typed view of an affiliates record, so hooks read statuses and
// money settings without string keys scattered around.
type Affiliate struct {
	core.BaseRecordProxy
}

// Code is the affiliate's own code, usable as /r/{code}.
func (a *Affiliate) Code() string { return a.GetString(FieldCode) }

// Status is pending, approved, rejected or suspended.
func (a *Affiliate) Status() string { return a.GetString(FieldStatus) }

// SetStatus changes the status (admins only: never exposed to the affiliate).
func (a *Affiliate) SetStatus(s string) { a.Set(FieldStatus, s) }

// ProgramID is the program the affiliate belongs to.
func (a *Affiliate) ProgramID() string { return a.GetString(FieldProgram) }

// TierID is the affiliate's current tier, or "".
func (a *Affiliate) TierID() string { return a.GetString(AffiliateTier) }

// CommissionOverride is a per-affiliate commission value (same unit as the program's);
// 0 means none.
func (a *Affiliate) CommissionOverride() int64 { return int64(a.GetInt(AffiliateCommissionOverride)) }

// IsApproved reports whether the affiliate may have working links and earn commissions.
func (a *Affiliate) IsApproved() bool { return a.Status() == AffiliateApproved }

// Program is a typed view of a programs record.
type Program struct {
	core.BaseRecordProxy
}

// Slug is the program's URL-safe identifier.
func (p *Program) Slug() string { return p.GetString(ProgramSlug) }

// Destination is the default landing page of the program's links.
func (p *Program) Destination() string { return p.GetString(ProgramDestination) }

// AllowedDomains are the hosts links and deep links may send visitors to.
func (p *Program) AllowedDomains() []string { return p.GetStringSlice(ProgramAllowedDomains) }

// Currency is the lowercase ISO currency of the program's money.
func (p *Program) Currency() string { return p.GetString(FieldCurrency) }

// CommissionType is percent (basis points) or flat (minor units).
func (p *Program) CommissionType() string { return p.GetString(ProgramCommissionType) }

// CommissionValue is basis points for percent programs, minor units for flat ones.
func (p *Program) CommissionValue() int64 { return int64(p.GetInt(ProgramCommissionValue)) }

// CookieDays is how long a click may be credited with a later conversion.
func (p *Program) CookieDays() int { return p.GetInt(ProgramCookieDays) }

// HoldDays is how long a commission waits (refund window) before it becomes payable.
func (p *Program) HoldDays() int { return p.GetInt(ProgramHoldDays) }

// MinPayout is the smallest net balance, in minor units, that is paid out.
func (p *Program) MinPayout() int64 { return int64(p.GetInt(ProgramMinPayout)) }

// PayoutSchedule is the cron spec of the program's payout runs.
func (p *Program) PayoutSchedule() string { return p.GetString(ProgramPayoutSchedule) }

// AutoApprove reports whether signups are approved without review.
func (p *Program) AutoApprove() bool { return p.GetBool(ProgramAutoApprove) }

// Active reports whether the program's links work and conversions are accepted.
func (p *Program) Active() bool { return p.GetBool(ProgramActive) }

// PostbackSecret authenticates the program's server-to-server calls.
func (p *Program) PostbackSecret() string { return p.GetString(ProgramPostbackSecret) }

// Link is a typed view of a links record.
type Link struct {
	core.BaseRecordProxy
}

// Code is the link's code, used as /r/{code}.
func (l *Link) Code() string { return l.GetString(FieldCode) }

// AffiliateID is the link's owner.
func (l *Link) AffiliateID() string { return l.GetString(FieldAffiliate) }

// ProgramID is the program the link sends visitors to.
func (l *Link) ProgramID() string { return l.GetString(FieldProgram) }

// Destination is where /r/{code} redirects.
func (l *Link) Destination() string { return l.GetString(LinkDestination) }

// Conversion is a typed view of a conversions record.
type Conversion struct {
	core.BaseRecordProxy
}

// AffiliateID is the affiliate credited with the sale.
func (c *Conversion) AffiliateID() string { return c.GetString(FieldAffiliate) }

// ProgramID is the program the sale belongs to.
func (c *Conversion) ProgramID() string { return c.GetString(FieldProgram) }

// Amount is the sale amount in minor units.
func (c *Conversion) Amount() int64 { return int64(c.GetInt(FieldAmount)) }

// Currency is the lowercase ISO currency of Amount.
func (c *Conversion) Currency() string { return c.GetString(FieldCurrency) }

// Status is pending, approved, rejected or refunded.
func (c *Conversion) Status() string { return c.GetString(FieldStatus) }

// Source is where the conversion came from (stripe, postback, api, coupon, manual).
func (c *Conversion) Source() string { return c.GetString(ConversionSource) }

// ExternalID is the sender's id of the sale, unique per source.
func (c *Conversion) ExternalID() string { return c.GetString(ConversionExternalID) }

// OccurredAt is when the sale happened (not when it was reported).
func (c *Conversion) OccurredAt() types.DateTime { return c.GetDateTime(ConversionOccurredAt) }

// Commission is a typed view of a commissions record.
type Commission struct {
	core.BaseRecordProxy
}

// AffiliateID is the affiliate who earns (or, for clawbacks, owes) the amount.
func (c *Commission) AffiliateID() string { return c.GetString(FieldAffiliate) }

// Kind is sale, recurring, bonus, clawback or adjustment.
func (c *Commission) Kind() string { return c.GetString(CommissionKind) }

// Amount is in minor units; negative for clawbacks.
func (c *Commission) Amount() int64 { return int64(c.GetInt(FieldAmount)) }

// Currency is the lowercase ISO currency of Amount.
func (c *Commission) Currency() string { return c.GetString(FieldCurrency) }

// Status is pending, payable, paid or void.
func (c *Commission) Status() string { return c.GetString(FieldStatus) }

// PayableAt is when the hold period ends.
func (c *Commission) PayableAt() types.DateTime { return c.GetDateTime(CommissionPayableAt) }

// PayoutID is the payout that paid this commission, or "".
func (c *Commission) PayoutID() string { return c.GetString(CommissionPayout) }

// Payout is a typed view of a payouts record.
type Payout struct {
	core.BaseRecordProxy
}

// AffiliateID is the payee.
func (p *Payout) AffiliateID() string { return p.GetString(FieldAffiliate) }

// Amount is the sum of the payout's commissions, in minor units.
func (p *Payout) Amount() int64 { return int64(p.GetInt(FieldAmount)) }

// Currency is the lowercase ISO currency of Amount.
func (p *Payout) Currency() string { return p.GetString(FieldCurrency) }

// Status is pending, processing, paid, failed or canceled.
func (p *Payout) Status() string { return p.GetString(FieldStatus) }

// Method is stripe or manual.
func (p *Payout) Method() string { return p.GetString(PayoutMethod) }

// IdempotencyKey is sent with every attempt of the transfer so Stripe pays at most once.
func (p *Payout) IdempotencyKey() string { return p.GetString(PayoutIdempotencyKey) }

// proxy wraps a record of the expected collection into the proxy P.
func proxy[T any, P interface {
	*T
	core.RecordProxy
}](record *core.Record, collection string) (P, error) {
	if record == nil {
		return nil, fmt.Errorf("nil %s record", collection)
	}
	if record.Collection().Name != collection {
		return nil, fmt.Errorf("record %s belongs to %q, not %q", record.Id, record.Collection().Name, collection)
	}
	p := P(new(T))
	p.SetProxyRecord(record)
	return p, nil
}

// AsAffiliate wraps an affiliates record.
func AsAffiliate(r *core.Record) (*Affiliate, error) { return proxy[Affiliate](r, Affiliates) }

// AsProgram wraps a programs record.
func AsProgram(r *core.Record) (*Program, error) { return proxy[Program](r, Programs) }

// AsLink wraps a links record.
func AsLink(r *core.Record) (*Link, error) { return proxy[Link](r, Links) }

// AsConversion wraps a conversions record.
func AsConversion(r *core.Record) (*Conversion, error) { return proxy[Conversion](r, Conversions) }

// AsCommission wraps a commissions record.
func AsCommission(r *core.Record) (*Commission, error) { return proxy[Commission](r, Commissions) }

// AsPayout wraps a payouts record.
func AsPayout(r *core.Record) (*Payout, error) { return proxy[Payout](r, Payouts) }
