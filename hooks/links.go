package hooks

import (
	"fmt"
	"strings"

	"github.com/pocketbase/dbx"

	validation "github.com/pocketbase/ozzo-validation/v4"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/urlpolicy"
	"github.com/pbaffiliate/pbaffiliate/hooks/store"
)

func registerLinks(app core.App) {
	// An affiliate's new link belongs to the affiliate and its program; the create rule has
	// already refused any other owner or program.
	app.OnRecordCreateRequest(collections.Links).BindFunc(func(e *core.RecordRequestEvent) error {
		if e.HasSuperuserAuth() || e.Auth == nil {
			return e.Next()
		}
		if e.Record.GetString(collections.FieldAffiliate) == "" {
			e.Record.Set(collections.FieldAffiliate, e.Auth.Id)
		}
		if e.Record.GetString(collections.FieldProgram) == "" {
			e.Record.Set(collections.FieldProgram, e.Auth.GetString(collections.FieldProgram))
		}
		return e.Next()
	})

	app.OnRecordCreate(collections.Links).BindFunc(func(e *core.RecordEvent) error {
		r := e.Record
		if r.GetString(collections.FieldProgram) == "" {
			if a, err := collections.FindAffiliate(e.App, r.GetString(collections.FieldAffiliate)); err == nil {
				r.Set(collections.FieldProgram, a.ProgramID())
			}
		}
		if r.GetString(collections.LinkDestination) == "" {
			if p, err := collections.FindProgram(e.App, r.GetString(collections.FieldProgram)); err == nil {
				r.Set(collections.LinkDestination, p.Destination())
			}
		}
		if r.GetString(collections.FieldCode) == "" {
			base := r.GetString(collections.LinkLabel)
			if a, err := collections.FindAffiliate(e.App, r.GetString(collections.FieldAffiliate)); err == nil {
				base = a.Code() + " " + base
			}
			if err := assignCode(e.App, r, base); err != nil {
				return err
			}
		}
		return e.Next()
	})

	app.OnRecordValidate(collections.Links).BindFunc(func(e *core.RecordEvent) error {
		r := e.Record
		errs := validation.Errors{}
		if err := validateCode(e.App, r, errs); err != nil {
			return err
		}
		a, err := collections.FindAffiliate(e.App, r.GetString(collections.FieldAffiliate))
		if err != nil {
			errs[collections.FieldAffiliate] = validation.NewError("not_found", "Unknown affiliate.")
			return errs
		}
		if a.ProgramID() != r.GetString(collections.FieldProgram) {
			errs[collections.FieldProgram] = validation.NewError("program_mismatch", "A link belongs to its affiliate's program.")
			return errs
		}
		p, err := collections.FindProgram(e.App, a.ProgramID())
		if err != nil {
			errs[collections.FieldProgram] = validation.NewError("not_found", "Unknown program.")
			return errs
		}
		if _, err := urlpolicy.Check(r.GetString(collections.LinkDestination), p.AllowedDomains()); err != nil {
			errs[collections.LinkDestination] = validation.NewError("invalid_destination",
				"The destination "+err.Error()+" (allowed: "+strings.Join(p.AllowedDomains(), ", ")+").")
		}
		if len(errs) > 0 {
			return errs
		}
		return e.Next()
	})
}

// registerLinkDeletion lets a link be deleted without losing or corrupting what it earned: its
// clicks and sales stay, credited to the affiliate without a link, and its stats_daily rows are
// added to the affiliate's rows without a link. PocketBase would otherwise clear the relation
// record by record (a save per click) and, in stats_daily, clash with the unique (day,
// affiliate, program, link) index wherever the affiliate already has a row without a link.
// One transaction with the delete, so a failure leaves the link and its figures as they were.
func registerLinkDeletion(app core.App) {
	app.OnRecordDelete(collections.Links).BindFunc(func(e *core.RecordEvent) error {
		outer := e.App
		return outer.RunInTransaction(func(tx core.App) error {
			e.App = tx
			defer func() { e.App = outer }()
			if err := store.MergeLinkStats(tx, e.Record.Id); err != nil {
				return fmt.Errorf("detach link %s: %w", e.Record.Id, err)
			}
			params := dbx.Params{"link": e.Record.Id}
			for _, q := range []string{
				"UPDATE conversions SET link = '' WHERE link = {:link}",
				"UPDATE clicks SET link = '' WHERE link = {:link}",
			} {
				if _, err := tx.DB().NewQuery(q).Bind(params).Execute(); err != nil {
					return fmt.Errorf("detach link %s: %w", e.Record.Id, err)
				}
			}
			return e.Next()
		})
	})
}

// registerCoupons keeps a coupon inside its affiliate's program, so a code can never credit an
// affiliate with a sale of a program it does not belong to.
func registerCoupons(app core.App) {
	app.OnRecordValidate(collections.Coupons).BindFunc(func(e *core.RecordEvent) error {
		e.Record.Set(collections.FieldCode, strings.ToLower(strings.TrimSpace(e.Record.GetString(collections.FieldCode))))
		a, err := collections.FindAffiliate(e.App, e.Record.GetString(collections.FieldAffiliate))
		if err != nil || a.ProgramID() != e.Record.GetString(collections.FieldProgram) {
			return fieldError(collections.FieldAffiliate, "program_mismatch", "The affiliate must belong to the coupon's program.")
		}
		return e.Next()
	})
}
