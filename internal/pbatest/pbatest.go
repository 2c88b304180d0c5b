// Package pbatest is the one test fixture of pbaffiliate: temporary PocketBase apps built from
// the real migrations (TempApp) or cloned from a fixed world of data with the real hooks
// (Fixture; Derive builds richer worlds on it, Save and FastPasswords help), a settable clock
// (Clock), the app served in-process (Serve, ServeRoutes with the list of the routes its hooks
// add) and one helper that sends a request to it (Request).
//
// It does not import package hooks, so that hooks' internal tests (package hooks) can use it
// without an import cycle. What needs the hooks gets them injected: NewFixture takes the
// register function and its configuration (hooks.Register and a hooks.Config), and the
// internal tests wire the single engine they test onto a TempApp themselves. The migrations
// come with the blank import below, so every app has the full schema whoever calls.
package pbatest

import (
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/pocketbase/pocketbase/tests"

	_ "github.com/pbaffiliate/pbaffiliate/migrations" // tests.NewTestApp runs the registered migrations
)

// TempApp is an app with the schema and the default program but no hooks, for tests of one
// engine or of raw SQL. It lives in temporary dirs that go with the test.
func TempApp(t testing.TB) *tests.TestApp {
	t.Helper()
	dir, err := migratedDir()
	if err != nil {
		t.Fatalf("migrated template: %v", err)
	}
	app := newApp(t, dir, nil)
	t.Cleanup(app.Cleanup)
	return app
}

// migrated is a data dir with every migration applied, made once per test process: migrating
// an empty dir took 25 times as long as cloning a migrated one under -race (86 s against
// 3.4 s on a loaded machine), and TempApp and NewFixture would otherwise migrate each time.
var migrated struct {
	once sync.Once
	dir  string
	err  error
}

func migratedDir() (string, error) {
	migrated.once.Do(func() {
		empty, err := os.MkdirTemp("", "pba_empty_")
		if err != nil {
			migrated.err = err
			return
		}
		defer os.RemoveAll(empty)
		app, err := tests.NewTestApp(empty) // clones empty into a new dir and migrates it
		if err != nil {
			migrated.err = fmt.Errorf("test app: %w", err)
			return
		}
		// Close the database but keep the dir: it is what every app clones.
		if err := app.ResetBootstrapState(); err != nil {
			app.Cleanup()
			migrated.err = err
			return
		}
		migrated.dir = app.DataDir()
	})
	return migrated.dir, migrated.err
}

// RemoveTemplate removes the migrated data dir TempApp and NewFixture clone; a package's
// TestMain calls it after m.Run (without it the dir stays in the system's temp dir).
func RemoveTemplate() {
	if migrated.dir != "" {
		os.RemoveAll(migrated.dir)
	}
}

// newApp clones the data dir src into a new test app (running any migration src lacks) and
// registers hooks on it when register is not nil.
func newApp(t testing.TB, src string, register func(*tests.TestApp) error) *tests.TestApp {
	t.Helper()
	app, err := tests.NewTestApp(src)
	if err != nil {
		t.Fatalf("test app: %v", err)
	}
	if register != nil {
		if err := register(app); err != nil {
			app.Cleanup()
			t.Fatalf("register hooks: %v", err)
		}
	}
	return app
}
