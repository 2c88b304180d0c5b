package hooks

import (
	"fmt"
	"sync"
	"time"

	validation "github.com/pocketbase/ozzo-validation/v4"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/store"
)

// registerRollupGuards keeps the rollups equal to the facts against the changes no writer of
// hooks/store makes:
//   - stats_daily and the rollups derived from it are written by pbaffiliate only: a record
//     created, edited or deleted by hand (superusers included) is refused, since it would
//     make one rollup disagree with the others and with the facts — correct the sale instead;
//   - an affiliate with figures in stats_daily cannot be deleted (the program's history would
//     change under the hourly and dims rollups): reject or suspend it instead. Affiliates
//     without figures (spam sign-ups) can be;
//   - a deleted program takes its rollups with it (cascade), and the leaderboard's board is
//     rebuilt.
func registerRollupGuards(app core.App) {
	derived := []string{collections.StatsDaily, collections.StatsProgramHourly, collections.StatsDims, collections.CommissionTotals}
	refuse := func(e *core.RecordRequestEvent) error {
		return e.BadRequestError("Figures are derived from clicks and sales and cannot be edited.",
			validation.Errors{"collection": validation.NewError("derived", "Change the click or sale instead; the figures follow.")})
	}
	app.OnRecordCreateRequest(derived...).BindFunc(refuse)
	app.OnRecordUpdateRequest(derived...).BindFunc(refuse)
	app.OnRecordDeleteRequest(derived...).BindFunc(refuse)

	app.OnRecordDelete(collections.Affiliates).BindFunc(func(e *core.RecordEvent) error {
		var n int
		err := e.App.DB().NewQuery("SELECT EXISTS (SELECT 1 FROM " + collections.StatsDaily + " WHERE affiliate = {:a})").
			Bind(map[string]any{"a": e.Record.Id}).Row(&n)
		if err != nil {
			return fmt.Errorf("affiliate %s figures: %w", e.Record.Id, err)
		}
		if n > 0 {
			return validation.Errors{"id": validation.NewError("has_figures",
				"This affiliate has clicks or sales in the program's figures: reject or suspend it instead of deleting it.")}
		}
		return e.Next()
	})
	app.OnRecordAfterDeleteSuccess(collections.Programs).BindFunc(func(e *core.RecordEvent) error {
		store.InvalidateBoard(e.App)
		return e.Next()
	})
	// The board is built in the background as the server starts, so the first leaderboard
	// does not wait for it (about a second per million stats_daily rows; writers wait only
	// for the instant its snapshot starts).
	var warming sync.WaitGroup
	app.OnTerminate().BindFunc(func(e *core.TerminateEvent) error {
		warming.Wait() // the build reads the database the app is about to close
		return e.Next()
	})
	app.OnServe().BindFunc(func(se *core.ServeEvent) error {
		warming.Add(1)
		go func() {
			defer warming.Done()
			start := time.Now()
			if err := store.WarmBoard(se.App); err != nil {
				se.App.Logger().Warn("leaderboard board not built", "error", err)
				return
			}
			se.App.Logger().Debug("leaderboard board built", "took", time.Since(start).String())
		}()
		return se.Next()
	})
}
