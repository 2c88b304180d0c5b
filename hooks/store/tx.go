package store

import (
	"database/sql"
	"errors"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"
)

// SQLTx is the database/sql transaction under a PocketBase transaction app. Hot paths (the
// click writer, the commission engine) prepare a positional statement once per batch and run
// it per row, several times cheaper than building a statement with named placeholders.
func SQLTx(tx core.App) (*sql.Tx, error) {
	dbxTx, ok := tx.NonconcurrentDB().(*dbx.Tx)
	if !ok {
		return nil, errors.New("store: not inside a transaction (use the app RunInTransaction passes)")
	}
	builder, ok := dbxTx.Builder.(interface{ Executor() dbx.Executor })
	if !ok {
		return nil, errors.New("store: unexpected transaction builder")
	}
	t, ok := builder.Executor().(*sql.Tx)
	if !ok {
		return nil, errors.New("store: unexpected transaction executor")
	}
	return t, nil
}
