package hooks

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	validation "github.com/pocketbase/ozzo-validation/v4"
	"github.com/pocketbase/pocketbase/core"
	"github.com/pocketbase/pocketbase/tools/security"
	"github.com/robfig/cron/v3"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/codes"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/urlpolicy"
)

// maxPercentBasisPoints is 100%: a percent commission can never exceed the sale.
const maxPercentBasisPoints = 10000

func registerPrograms(app core.App) {
	// Numeric defaults are applied only where the request left the field out: 0 is a legitimate
	// hold_days or min_payout, so a model hook could not tell "unset" from "zero".
	app.OnRecordCreateRequest(collections.Programs).BindFunc(func(e *core.RecordRequestEvent) error {
		info, err := e.RequestInfo()
		if err != nil {
			return e.BadRequestError("Could not read the request body.", err)
		}
		for field, value := range map[string]int{
			collections.ProgramHoldDays:        collections.DefaultHoldDays,
			collections.ProgramMinPayout:       collections.DefaultMinPayout,
			collections.ProgramCommissionValue: collections.DefaultCommissionValue,
		} {
			if v, ok := info.Body[field]; !ok || v == nil || v == "" {
				e.Record.Set(field, value)
			}
		}
		if _, ok := info.Body[collections.ProgramActive]; !ok {
			e.Record.Set(collections.ProgramActive, true)
		}
		return e.Next()
	})

	app.OnRecordCreate(collections.Programs).BindFunc(func(e *core.RecordEvent) error {
		applyProgramDefaults(e.Record)
		return e.Next()
	})

	app.OnRecordValidate(collections.Programs).BindFunc(func(e *core.RecordEvent) error {
		if errs := normalizeProgram(e.Record); len(errs) > 0 {
			return errs
		}
		return e.Next()
	})
}

// applyProgramDefaults fills what a new program needs to work and that has one sensible value.
func applyProgramDefaults(r *core.Record) {
	defaults := map[string]any{
		collections.FieldCurrency:         collections.DefaultCurrency,
		collections.ProgramCommissionType: collections.CommissionPercent,
		collections.ProgramRecurring:      collections.RecurringFirst,
		collections.ProgramAttribution:    collections.AttributionLastClick,
		collections.ProgramPayoutSchedule: collections.DefaultPayoutSchedule,
		collections.ProgramPostbackSecret: security.RandomString(40),
		collections.ProgramSlug:           codes.Slug(r.GetString(collections.FieldName)),
	}
	for field, value := range defaults {
		if r.GetString(field) == "" {
			r.Set(field, value)
		}
	}
	if r.GetInt(collections.ProgramCookieDays) == 0 { // 0 is below the field's minimum: never meant
		r.Set(collections.ProgramCookieDays, collections.DefaultCookieDays)
	}
	if len(r.GetStringSlice(collections.ProgramAllowedDomains)) == 0 {
		if u, err := url.Parse(r.GetString(collections.ProgramDestination)); err == nil && u.Hostname() != "" {
			r.Set(collections.ProgramAllowedDomains, []string{strings.ToLower(u.Hostname())})
		}
	}
}

// normalizeProgram lowercases what is compared case-insensitively and checks what the schema
// cannot: the cron spec, the domains, the destination and the commission bounds.
func normalizeProgram(r *core.Record) validation.Errors {
	errs := validation.Errors{}
	r.Set(collections.FieldCurrency, strings.ToLower(strings.TrimSpace(r.GetString(collections.FieldCurrency))))

	spec := strings.TrimSpace(r.GetString(collections.ProgramPayoutSchedule))
	r.Set(collections.ProgramPayoutSchedule, spec)
	if _, err := cron.ParseStandard(spec); err != nil {
		errs[collections.ProgramPayoutSchedule] = validation.NewError("invalid_cron",
			"Must be a 5-field cron spec, optionally prefixed with CRON_TZ=Area/City (e.g. \"0 9 1 * *\"): "+err.Error())
	}

	domains, err := NormalizeDomains(r.Get(collections.ProgramAllowedDomains))
	if err != nil {
		errs[collections.ProgramAllowedDomains] = validation.NewError("invalid_domains", err.Error())
	} else {
		r.Set(collections.ProgramAllowedDomains, domains)
		if _, err := urlpolicy.Check(r.GetString(collections.ProgramDestination), domains); err != nil {
			errs[collections.ProgramDestination] = validation.NewError("invalid_destination", "The destination "+err.Error()+".")
		}
	}

	if r.GetString(collections.ProgramCommissionType) == collections.CommissionPercent &&
		r.GetInt(collections.ProgramCommissionValue) > maxPercentBasisPoints {
		errs[collections.ProgramCommissionValue] = validation.NewError("too_high",
			"A percent commission is in basis points and cannot exceed 10000 (100%).")
	}
	tz := strings.TrimSpace(r.GetString(collections.ProgramTimezone))
	r.Set(collections.ProgramTimezone, tz)
	if _, err := time.LoadLocation(tz); err != nil || strings.EqualFold(tz, "local") {
		errs[collections.ProgramTimezone] = validation.NewError("invalid_timezone", "Must be an IANA time zone such as Europe/Berlin (empty is UTC).")
	}
	if r.GetString(collections.ProgramRecurring) == collections.RecurringMonths && r.GetInt(collections.ProgramRecurringMonths) < 1 {
		errs[collections.ProgramRecurringMonths] = validation.NewError("required", "Set how many months recurring commissions last.")
	}
	return errs
}

// NormalizeDomains accepts a JSON list of domains, or one comma-separated string as typed in
// the dashboard, and returns the normalized, de-duplicated list.
func NormalizeDomains(raw any) ([]string, error) {
	encoded, err := json.Marshal(raw)
	if err != nil {
		return nil, fmt.Errorf("unreadable domain list: %w", err)
	}
	var items []string
	if err := json.Unmarshal(encoded, &items); err != nil {
		var one string
		if json.Unmarshal(encoded, &one) != nil {
			return nil, errors.New(`must be a list of domains, e.g. ["example.com"]`)
		}
		items = strings.Split(one, ",")
	}
	out := make([]string, 0, len(items))
	for _, item := range items {
		if strings.TrimSpace(item) == "" {
			continue
		}
		d, err := urlpolicy.NormalizeDomain(item)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	if len(out) == 0 {
		return nil, errors.New(`list at least one domain, e.g. ["example.com"]`)
	}
	return out, nil
}

// scheduleRuns is how many next run times GET /api/pba/programs/schedule answers.
const scheduleRuns = 3

// scheduleLocation is the zone a payout schedule runs in: its CRON_TZ= (or TZ=) prefix, else
// the server's local time.
func scheduleLocation(spec string) *time.Location {
	if f := strings.Fields(spec); len(f) > 0 && (strings.HasPrefix(f[0], "CRON_TZ=") || strings.HasPrefix(f[0], "TZ=")) {
		if l, err := time.LoadLocation(f[0][strings.Index(f[0], "=")+1:]); err == nil {
			return l
		}
	}
	return time.Local
}

// scheduleZone names a schedule's zone for people: the IANA name, or "" for server time.
func scheduleZone(spec string) string {
	if loc := scheduleLocation(spec); loc != time.Local {
		return loc.String()
	}
	return ""
}

// nextRuns are a payout schedule's next n run times after from, in the schedule's zone; fewer
// when it stops running (30 February never does).
func nextRuns(spec string, from time.Time, n int) ([]time.Time, error) {
	sched, err := cron.ParseStandard(strings.TrimSpace(spec))
	if err != nil {
		return nil, err
	}
	loc := scheduleLocation(spec)
	next := make([]time.Time, 0, n)
	t := from
	for range n {
		t = sched.Next(t)
		if t.IsZero() {
			break
		}
		next = append(next, t.In(loc))
	}
	return next, nil
}

// handleSchedule checks a payout schedule as the program's validation does and answers its
// next run times, so a form can show them before saving: {"spec", "timezone", "next": [RFC
// 3339 in the schedule's zone]}. A bad spec is a 400 naming spec.
func handleSchedule(re *core.RequestEvent) error {
	spec := strings.TrimSpace(re.Request.URL.Query().Get("spec"))
	runs, err := nextRuns(spec, time.Now(), scheduleRuns)
	if err != nil {
		return re.BadRequestError("Invalid payout schedule.", fieldError("spec", "invalid_cron",
			"Must be a 5-field cron spec, optionally prefixed with CRON_TZ=Area/City (e.g. \"0 9 1 * *\"): "+err.Error()))
	}
	// The runs are shown in the schedule's own zone (cron answers in the zone of the time given).
	zone := scheduleZone(spec)
	if zone == "" {
		zone = "server time (" + time.Now().Format("MST") + ")"
	}
	next := make([]string, 0, len(runs))
	for _, t := range runs {
		next = append(next, t.Format(time.RFC3339))
	}
	if len(next) == 0 {
		return re.BadRequestError("Invalid payout schedule.", fieldError("spec", "never", "This schedule never runs."))
	}
	return re.JSON(http.StatusOK, map[string]any{"spec": spec, "timezone": zone, "next": next})
}
