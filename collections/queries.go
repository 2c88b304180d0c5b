package collections

import (
	"database/sql"
	"errors"
	"fmt"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"
)

// FindProgram loads a program by id.
func FindProgram(app core.App, id string) (*Program, error) {
	r, err := app.FindRecordById(Programs, id)
	if err != nil {
		return nil, fmt.Errorf("find program %q: %w", id, err)
	}
	return AsProgram(r)
}

// FindDefaultProgram is the program a signup joins when it names none: the one with the
// default slug when it is active, else the oldest active program.
func FindDefaultProgram(app core.App) (*Program, error) {
	r, err := app.FindFirstRecordByFilter(Programs, "slug = {:slug} && active = true", dbx.Params{"slug": DefaultProgramSlug})
	if err == nil {
		return AsProgram(r)
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("find default program: %w", err)
	}
	records, err := app.FindRecordsByFilter(Programs, "active = true", "created", 1, 0)
	if err != nil {
		return nil, fmt.Errorf("find an active program: %w", err)
	}
	if len(records) == 0 {
		return nil, fmt.Errorf("no active program: %w", sql.ErrNoRows)
	}
	return AsProgram(records[0])
}

// FindAffiliate loads an affiliate by id.
func FindAffiliate(app core.App, id string) (*Affiliate, error) {
	r, err := app.FindRecordById(Affiliates, id)
	if err != nil {
		return nil, fmt.Errorf("find affiliate %q: %w", id, err)
	}
	return AsAffiliate(r)
}

// CodeTaken reports whether code is already used by an affiliate or a link other than
// exceptID, or is an imported legacy code of another affiliate than exceptID. All share the
// /r/{code} namespace, so a code must be unique across them.
func CodeTaken(app core.App, code, exceptID string) (bool, error) {
	for _, q := range []struct{ table, other string }{{Affiliates, "id"}, {Links, "id"}, {CodeAliases, FieldAffiliate}} {
		var n int
		err := app.DB().Select("count(*)").From(q.table).
			Where(dbx.HashExp{FieldCode: code}).
			AndWhere(dbx.Not(dbx.HashExp{q.other: exceptID})).
			Row(&n)
		if err != nil {
			return false, fmt.Errorf("check code in %s: %w", q.table, err)
		}
		if n > 0 {
			return true, nil
		}
	}
	return false, nil
}
