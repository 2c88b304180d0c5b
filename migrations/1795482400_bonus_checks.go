package migrations

import (
	"github.com/pocketbase/pocketbase/core"
	m "github.com/pocketbase/pocketbase/migrations"
)

// bonus_checks: the affiliate months whose monthly milestone bonuses are still to be
// evaluated. The commission engine writes a row in the transaction that adds a commission to
// the month (when its program has an active bonus) and deletes it once the month's bonuses are
// paid, so a crash between the two leaves the row for the next pass instead of losing the
// evaluation. A plain table, not a collection: the engine's own queue, which the records API
// has no business listing or changing (a row deleted by hand would be a bonus never checked).
func init() {
	m.Register(func(app core.App) error {
		_, err := app.DB().NewQuery(`CREATE TABLE bonus_checks (
			affiliate TEXT NOT NULL,
			program   TEXT NOT NULL,
			month     TEXT NOT NULL CHECK (month GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]'),
			PRIMARY KEY (affiliate, program, month)
		) WITHOUT ROWID`).Execute()
		return err
	}, func(app core.App) error {
		_, err := app.DB().NewQuery(`DROP TABLE IF EXISTS bonus_checks`).Execute()
		return err
	})
}
