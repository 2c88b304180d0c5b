// Package rules is the commission rule engine: given a conversion, its program, the affiliate
// and the affiliate's tier table it decides how much commission is earned and records why.
//
// It is pure Go with no PocketBase dependency so the money rules can be tested exhaustively and
// reused from hooks, jobs and reports alike. Money is always int64 minor units plus a lowercase
// ISO 4217 currency code; floats never appear, and every division rounds half-to-even with exact
// integer arithmetic.
package rules

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pbaffiliate/pbaffiliate/hooks/internal/money"
)

// Commission types, recurring modes and conversion kinds are named constants so callers and
// collections share one spelling.
const (
	// TypePercent means CommissionValue is in basis points of the conversion amount (2000 = 20%).
	TypePercent = "percent"
	// TypeFlat means CommissionValue is a fixed amount in the program currency's minor units.
	TypeFlat = "flat"

	// RecurringFirst pays only on the first payment of a subscription/customer.
	RecurringFirst = "first"
	// RecurringMonths pays on every payment made before SubscriptionStart + RecurringMonths months.
	RecurringMonths = "months"
	// RecurringLifetime pays on every payment for as long as the customer pays.
	RecurringLifetime = "lifetime"

	// KindSale is a one-off purchase or the first payment of a subscription.
	KindSale = "sale"
	// KindRecurring is a renewal payment of an existing subscription.
	KindRecurring = "recurring"

	// SourceOverride says the affiliate's personal CommissionOverride set the rate.
	SourceOverride = "override"
	// SourceTier says the affiliate's assigned tier set the rate.
	SourceTier = "tier"
	// SourceProgram says the program's default CommissionValue set the rate.
	SourceProgram = "program"
)

// Notes placed in Explanation.Note when a conversion earns nothing; exported so callers and tests
// can recognise them without copying strings.
const (
	// NoteZeroCommission marks a computed commission of zero or less; callers must not create it.
	NoteZeroCommission = "zero commission: not created"
	// NoteRecurringEnded marks a renewal paid on or after the end of a "months" window.
	NoteRecurringEnded = "recurring window ended"
	// NoteFirstOnly marks a renewal under a program that pays the first payment only.
	NoteFirstOnly = "recurring payment: program pays first payment only"
	// NoteTierNotFound marks an affiliate whose TierID is not in the tier table (program rate used).
	NoteTierNotFound = "assigned tier not found: program rate used"
	// NoteTierNoValue marks an assigned tier without a positive CommissionValue (program rate used).
	NoteTierNoValue = "assigned tier has no commission value: program rate used"
)

// MaxAmount bounds conversion amounts and flat commission values (1,000,000,000.00 in a
// two-decimal currency) so that every product stays far from int64 overflow and absurd inputs
// are rejected instead of silently paid.
const MaxAmount int64 = 100_000_000_000

// MaxPercentBP caps a percent rate at 100%: a commission larger than the sale is treated as a
// misconfiguration, not as a rate to honour.
const MaxPercentBP int64 = 10_000

// Sentinel errors let callers tell bad data from bad configuration with errors.Is.
var (
	// ErrInvalidConversion reports a conversion that cannot be valued (negative or too large
	// amount, unknown kind, missing currency or subscription start).
	ErrInvalidConversion = errors.New("rules: invalid conversion")
	// ErrInvalidProgram reports a program (or override/tier value) that cannot be applied.
	ErrInvalidProgram = errors.New("rules: invalid program")
	// ErrCurrencyMismatch reports a conversion in a different currency from its program.
	ErrCurrencyMismatch = errors.New("rules: currency mismatch")
)

// Program is the commission configuration of an affiliate program; it supplies the default rate
// and the recurring policy every conversion is judged by.
type Program struct {
	// CommissionType is TypePercent or TypeFlat; it also decides how override and tier values
	// are read.
	CommissionType string
	// CommissionValue is basis points for percent (2000 = 20%), minor units for flat.
	CommissionValue int64
	// Recurring is RecurringFirst, RecurringMonths or RecurringLifetime ("" is read as "first").
	Recurring string
	// RecurringMonths is the length of the "months" window in calendar months.
	RecurringMonths int
	// Currency is the lowercase ISO 4217 code conversions and flat amounts are expressed in.
	Currency string
}

// Affiliate carries the parts of an affiliate that influence its rate.
type Affiliate struct {
	// ID identifies the affiliate (not used for computation; kept for callers' convenience).
	ID string
	// TierID is the tier currently assigned to the affiliate; "" means no tier.
	TierID string
	// CommissionOverride is a personal rate read like Program.CommissionValue; 0 (or less) = none.
	CommissionOverride int64
}

// Conversion is one payment attributed to an affiliate, the thing commission is earned on.
type Conversion struct {
	// Amount is the payment in minor units, 0..MaxAmount.
	Amount int64
	// Currency is the lowercase ISO 4217 code of Amount.
	Currency string
	// Kind is KindSale or KindRecurring ("" is read as "sale").
	Kind string
	// SubscriptionStart is the first payment of the subscription/customer, zero if not recurring.
	SubscriptionStart time.Time
	// OccurredAt is when this payment happened.
	OccurredAt time.Time
	// PaymentNumber is 1 for the first payment of a subscription/customer, 2 for the second, ...;
	// 0 means unknown.
	PaymentNumber int
}

// Performance is what an affiliate achieved so far this calendar month; TierFor uses it to move
// affiliates between tiers.
type Performance struct {
	// Revenue is the converted revenue in minor units of the program currency.
	Revenue int64
	// Conversions is the number of conversions.
	Conversions int
}

// Result is the outcome of Compute: the commission to create (if Amount > 0) and why.
type Result struct {
	// Amount is the commission in minor units of the program currency; 0 means create nothing.
	Amount int64 `json:"amount"`
	// Rule explains how Amount was reached; store it next to the commission for audits.
	Rule Explanation `json:"rule"`
}

// Explanation is the JSON-serialisable reason for a commission, shown to admins and affiliates
// and kept for audits and disputes.
type Explanation struct {
	// Source is SourceOverride, SourceTier or SourceProgram: which rate won.
	Source string `json:"source"`
	// Type is the program's commission type (TypePercent or TypeFlat).
	Type string `json:"type"`
	// Value is the rate used: basis points for percent, minor units for flat.
	Value int64 `json:"value"`
	// TierID is the tier whose rate was used (only when Source is SourceTier).
	TierID string `json:"tier_id,omitempty"`
	// TierName is the name of that tier (only when Source is SourceTier).
	TierName string `json:"tier_name,omitempty"`
	// Base is the conversion amount the rate applied to.
	Base int64 `json:"base"`
	// Recurring is the program's recurring policy, normalised ("" becomes "first").
	Recurring string `json:"recurring"`
	// Payment is the conversion's PaymentNumber.
	Payment int `json:"payment"`
	// Note says why nothing (or a fallback rate) was used; empty for an ordinary commission.
	Note string `json:"note,omitempty"`
	// Boost is the basis points incentive campaigns added to a percent rate (incentives.go).
	Boost int64 `json:"boost,omitempty"`
	// Multiplier is the per-mille factor a campaign applied (1500 = ×1.5); 0 when none did.
	Multiplier int64 `json:"multiplier,omitempty"`
	// Incentives are the campaigns that changed this commission.
	Incentives []AppliedIncentive `json:"incentives,omitempty"`
}

// JSON returns the explanation as JSON for storage in a json field. It cannot fail: the struct
// holds only strings and integers, so a marshalling error is a programming bug and panics.
func (e Explanation) JSON() []byte {
	b, err := json.Marshal(e)
	if err != nil {
		panic("rules: marshal explanation: " + err.Error())
	}
	return b
}

// Compute returns the commission earned by conversion c under program p for affiliate a.
//
// Rate precedence: a.CommissionOverride (> 0) beats the affiliate's assigned tier (a.TierID found
// in tiers with CommissionValue > 0) beats p.CommissionValue. Override and tier values are read in
// the program's CommissionType. perf is accepted for callers' symmetry with TierFor but does not
// change the rate: tier moves happen through TierFor and the assigned TierID, so mid-month
// performance never alters rates retroactively.
//
// A conversion that earns nothing (recurring policy, zero or negative result) yields Amount 0, a
// Note and no error; callers must not create a commission when Amount is 0. Errors are returned
// only for invalid input: see ErrInvalidConversion, ErrInvalidProgram and ErrCurrencyMismatch.
func Compute(c Conversion, p Program, a Affiliate, tiers []Tier, perf Performance) (Result, error) {
	_ = perf
	if err := validate(c, p); err != nil {
		return Result{}, err
	}
	recurring := p.Recurring
	if recurring == "" {
		recurring = RecurringFirst
	}
	e := Explanation{
		Source:    SourceProgram,
		Type:      p.CommissionType,
		Value:     p.CommissionValue,
		Base:      c.Amount,
		Recurring: recurring,
		Payment:   c.PaymentNumber,
	}
	switch {
	case a.CommissionOverride > 0:
		e.Source, e.Value = SourceOverride, a.CommissionOverride
	case a.TierID != "":
		t, ok := findTier(tiers, a.TierID)
		switch {
		case !ok:
			e.Note = NoteTierNotFound
		case t.CommissionValue <= 0:
			e.Note = NoteTierNoValue
		default:
			e.Source, e.Value, e.TierID, e.TierName = SourceTier, t.CommissionValue, t.ID, t.Name
		}
	}
	if err := checkValue(p.CommissionType, e.Value, e.Source); err != nil {
		return Result{}, err
	}

	if renewal(c) {
		switch recurring {
		case RecurringFirst:
			e.Note = NoteFirstOnly
			return Result{Rule: e}, nil
		case RecurringMonths:
			end := c.SubscriptionStart.AddDate(0, p.RecurringMonths, 0)
			if !c.OccurredAt.Before(end) {
				e.Note = NoteRecurringEnded
				return Result{Rule: e}, nil
			}
		}
	}

	var amount int64
	if p.CommissionType == TypePercent {
		amount = money.PercentOf(c.Amount, e.Value)
	} else {
		amount = e.Value
	}
	if amount <= 0 {
		e.Note = NoteZeroCommission
		return Result{Rule: e}, nil
	}
	return Result{Amount: amount, Rule: e}, nil
}

// renewal reports whether c is a later payment of a subscription rather than its first payment.
// An explicit PaymentNumber wins (1 = first, >1 = renewal); with PaymentNumber unknown (0) the
// Kind decides.
func renewal(c Conversion) bool {
	if c.PaymentNumber > 0 {
		return c.PaymentNumber > 1
	}
	return c.Kind == KindRecurring
}

func validate(c Conversion, p Program) error {
	switch {
	case c.Amount < 0:
		return fmt.Errorf("%w: negative amount %d", ErrInvalidConversion, c.Amount)
	case c.Amount > MaxAmount:
		return fmt.Errorf("%w: amount %d exceeds %d", ErrInvalidConversion, c.Amount, MaxAmount)
	case c.Kind != "" && c.Kind != KindSale && c.Kind != KindRecurring:
		return fmt.Errorf("%w: unknown kind %q", ErrInvalidConversion, c.Kind)
	case c.PaymentNumber < 0:
		return fmt.Errorf("%w: negative payment number %d", ErrInvalidConversion, c.PaymentNumber)
	case c.Currency == "":
		return fmt.Errorf("%w: missing currency", ErrInvalidConversion)
	}
	switch p.CommissionType {
	case TypePercent, TypeFlat:
	default:
		return fmt.Errorf("%w: unknown commission type %q", ErrInvalidProgram, p.CommissionType)
	}
	switch p.Recurring {
	case "", RecurringFirst, RecurringLifetime:
	case RecurringMonths:
		if p.RecurringMonths < 0 {
			return fmt.Errorf("%w: negative recurring months %d", ErrInvalidProgram, p.RecurringMonths)
		}
		if renewal(c) && c.SubscriptionStart.IsZero() {
			return fmt.Errorf("%w: renewal without subscription start", ErrInvalidConversion)
		}
	default:
		return fmt.Errorf("%w: unknown recurring mode %q", ErrInvalidProgram, p.Recurring)
	}
	if p.Currency == "" {
		return fmt.Errorf("%w: missing currency", ErrInvalidProgram)
	}
	if !strings.EqualFold(c.Currency, p.Currency) {
		return fmt.Errorf("%w: conversion in %q, program in %q", ErrCurrencyMismatch, c.Currency, p.Currency)
	}
	return nil
}

// checkValue rejects rates that cannot be honoured; values <= 0 are left to the zero-commission
// path.
func checkValue(typ string, v int64, source string) error {
	if typ == TypePercent && v > MaxPercentBP {
		return fmt.Errorf("%w: %s rate %d bp exceeds 100%%", ErrInvalidProgram, source, v)
	}
	if typ == TypeFlat && v > MaxAmount {
		return fmt.Errorf("%w: %s flat value %d exceeds %d", ErrInvalidProgram, source, v, MaxAmount)
	}
	return nil
}

// Clawback returns the share of commission to reverse when refunded of conversionAmount is
// refunded: commission * refunded / conversionAmount rounded half-to-even, capped at commission.
// A refund of the whole amount or more reverses the full commission. It never returns a negative
// number (the caller negates it) and returns 0 when commission, refunded or conversionAmount is
// not positive, so a zero-amount conversion cannot cause a division by zero.
func Clawback(commission int64, conversionAmount int64, refunded int64) int64 {
	if commission <= 0 || conversionAmount <= 0 || refunded <= 0 {
		return 0
	}
	if refunded >= conversionAmount {
		return commission
	}
	return min(money.MulDivHalfEven(commission, refunded, conversionAmount), commission)
}
