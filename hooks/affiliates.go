package hooks

import (
	"fmt"
	"strings"
	"time"

	validation "github.com/pocketbase/ozzo-validation/v4"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/codes"
)

// maxCodeAttempts bounds the search for a free generated code; each miss lengthens the suffix.
const maxCodeAttempts = 20

func registerAffiliates(app core.App) {
	// Public signup: only an active program can be joined.
	app.OnRecordCreateRequest(collections.Affiliates).BindFunc(func(e *core.RecordRequestEvent) error {
		if e.HasSuperuserAuth() {
			return e.Next()
		}
		if id := e.Record.GetString(collections.FieldProgram); id != "" {
			p, err := collections.FindProgram(e.App, id)
			if err != nil || !p.Active() {
				return e.BadRequestError("Failed to create record.", validation.Errors{
					collections.FieldProgram: validation.NewError("program_closed", "This program does not exist or takes no signups."),
				})
			}
		}
		return e.Next()
	})

	// Every new affiliate, however created: a program, a status derived from the program's
	// auto_approve, a code and the preferences a new account starts with.
	app.OnRecordCreate(collections.Affiliates).BindFunc(func(e *core.RecordEvent) error {
		r := e.Record
		if r.GetString(collections.FieldProgram) == "" {
			p, err := collections.FindDefaultProgram(e.App)
			if err != nil {
				return validation.Errors{collections.FieldProgram: validation.NewError("no_program", "No active program to join.")}
			}
			r.Set(collections.FieldProgram, p.Id)
		}
		if r.GetString(collections.FieldStatus) == "" {
			status := collections.AffiliatePending
			if p, err := collections.FindProgram(e.App, r.GetString(collections.FieldProgram)); err == nil && p.AutoApprove() {
				status = collections.AffiliateApproved
			}
			r.Set(collections.FieldStatus, status)
		}
		if r.GetString(collections.FieldCode) == "" {
			base := r.GetString(collections.FieldName)
			if base == "" {
				base, _, _ = strings.Cut(r.Email(), "@")
			}
			if err := assignCode(e.App, r, base); err != nil {
				return err
			}
		}
		if r.GetString(collections.AffiliatePayoutMethod) == "" {
			r.Set(collections.AffiliatePayoutMethod, collections.MethodManual)
		}
		if r.GetString(collections.AffiliatePreferredChannel) == "" {
			r.Set(collections.AffiliatePreferredChannel, collections.ChannelEmail)
		}
		return e.Next()
	})

	app.OnRecordValidate(collections.Affiliates).BindFunc(func(e *core.RecordEvent) error {
		errs := validation.Errors{}
		r := e.Record
		if err := validateCode(e.App, r, errs); err != nil {
			return err
		}
		if tz := r.GetString(collections.AffiliateTimezone); tz != "" {
			if _, err := time.LoadLocation(tz); err != nil || tz == "Local" {
				errs[collections.AffiliateTimezone] = validation.NewError("invalid_timezone", "Use an IANA time zone such as Europe/Berlin.")
			}
		}
		checkErased(r, errs)
		if tierID := r.GetString(collections.AffiliateTier); tierID != "" {
			tier, err := e.App.FindRecordById(collections.Tiers, tierID)
			if err != nil || tier.GetString(collections.FieldProgram) != r.GetString(collections.FieldProgram) {
				errs[collections.AffiliateTier] = validation.NewError("tier_program", "The tier must belong to the affiliate's program.")
			}
		}
		if len(errs) > 0 {
			return errs
		}
		return e.Next()
	})
}

// checkErased keeps an erasure final (privacy_erase.go): an erased affiliate's status and
// erased_at never change again, so no admin door reinstates an account whose links would
// credit clicks for nobody or whose mail would restart.
func checkErased(r *core.Record, errs validation.Errors) {
	old := r.Original()
	if old.GetDateTime(collections.AffiliateErasedAt).IsZero() {
		return
	}
	if r.GetString(collections.FieldStatus) != old.GetString(collections.FieldStatus) {
		errs[collections.FieldStatus] = validation.NewError("erased", "This affiliate's personal data was erased; they cannot be reinstated.")
	}
	if !r.GetDateTime(collections.AffiliateErasedAt).Equal(old.GetDateTime(collections.AffiliateErasedAt)) {
		errs[collections.AffiliateErasedAt] = validation.NewError("erased", "An erasure cannot be undone.")
	}
}

// assignCode gives r a free code derived from base.
func assignCode(app core.App, r *core.Record, base string) error {
	for attempt := 0; attempt < maxCodeAttempts; attempt++ {
		code := codes.Candidate(base, attempt)
		taken, err := collections.CodeTaken(app, code, r.Id)
		if err != nil {
			return err
		}
		if !taken {
			r.Set(collections.FieldCode, code)
			return nil
		}
	}
	return fmt.Errorf("no free code for %q after %d attempts", base, maxCodeAttempts)
}

// validateCode refuses a code another affiliate or link already uses (both answer /r/{code}):
// a validation error goes into errs, a database failure is returned.
func validateCode(app core.App, r *core.Record, errs validation.Errors) error {
	code := strings.ToLower(strings.TrimSpace(r.GetString(collections.FieldCode)))
	r.Set(collections.FieldCode, code)
	if code == "" {
		return nil // the field's own required rule reports it
	}
	taken, err := collections.CodeTaken(app, code, r.Id)
	if err != nil {
		return err
	}
	if taken {
		errs[collections.FieldCode] = validation.NewError("code_taken", "This code is already in use.")
	}
	return nil
}
