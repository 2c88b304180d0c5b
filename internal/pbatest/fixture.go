package pbatest

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"
	"github.com/pocketbase/pocketbase/tests"
	"github.com/pocketbase/pocketbase/tools/types"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/store"
)

// Password is the password of every fixture account.
const Password = "fixture-password-1"

// Actor is one of the fixture's accounts with its auth token.
type Actor struct {
	ID    string
	Email string
	Token string
}

// Rows are the ids of one affiliate's rows in every owned collection.
type Rows struct {
	Link, Click, Conversion, Commission, Payout, Stats string
}

// Fixture is the fixed world: a default program (P) with a tier, a second auto-approve
// program (Q), approved affiliates A and B in P with one row of everything each, a pending
// affiliate in P and a superuser. C is the configuration of the hooks it registers on every
// app (hooks.Config), a type parameter so that this package need not import hooks.
//
// Building the world (bcrypt hashes, a dozen saves) is slow under -race, so a test package
// builds it once in TestMain with NewFixture and every test clones it with App.
type Fixture[C any] struct {
	Dir            string
	Config         C
	ProgramP       string
	ProgramQ       string
	TierP          string
	SecretP        string
	A, B, Pending  Actor
	Superuser      Actor
	RowsA, RowsB   Rows
	ProgramQSecret string
	register       func(core.App, C) error
}

// NewFixture builds the world, with register(app, cfg) (hooks.Register) on, into a new
// temporary data dir. Call Cleanup when done.
func NewFixture[C any](register func(core.App, C) error, cfg C) (*Fixture[C], error) {
	dir, err := migratedDir()
	if err != nil {
		return nil, fmt.Errorf("migrated template: %w", err)
	}
	app, err := tests.NewTestApp(dir)
	if err != nil {
		return nil, fmt.Errorf("test app: %w", err)
	}
	if err := register(app, cfg); err != nil {
		return nil, err
	}
	f := &Fixture[C]{Dir: app.DataDir(), Config: cfg, register: register}
	if err := f.fill(app); err != nil {
		app.Cleanup()
		return nil, err
	}
	// Close the database but keep the dir: it is the template every App clones.
	if err := app.ResetBootstrapState(); err != nil {
		return nil, err
	}
	return f, nil
}

// Derive is a richer world built on f's: a clone of it (hooks registered) that seed adds to,
// kept as the template every App of the returned fixture clones. The new fixture has f's
// actors and ids (seed keeps what else it makes); its Cleanup removes only its own dir. For
// a test that needs more than the shared world many times over without rebuilding it.
func (f *Fixture[C]) Derive(seed func(core.App) error) (*Fixture[C], error) {
	app, err := tests.NewTestApp(f.Dir)
	if err != nil {
		return nil, fmt.Errorf("test app: %w", err)
	}
	if err := f.register(app, f.Config); err != nil {
		app.Cleanup()
		return nil, err
	}
	if err := seed(app); err != nil {
		app.Cleanup()
		return nil, err
	}
	if err := app.ResetBootstrapState(); err != nil {
		app.Cleanup()
		return nil, err
	}
	derived := *f
	derived.Dir = app.DataDir()
	return &derived, nil
}

// Cleanup removes the template data dir.
func (f *Fixture[C]) Cleanup() { os.RemoveAll(f.Dir) }

// App returns a fresh clone of the world with the hooks registered. Unlike TempApp the caller
// cleans it up, as tests.ApiScenario does with the apps of Factory.
func (f *Fixture[C]) App(t testing.TB) *tests.TestApp {
	t.Helper()
	return f.AppWith(t, f.Config)
}

// AppWith is App with another configuration (e.g. lower fraud thresholds).
func (f *Fixture[C]) AppWith(t testing.TB, cfg C) *tests.TestApp {
	t.Helper()
	return newApp(t, f.Dir, func(app *tests.TestApp) error { return f.register(app, cfg) })
}

// Factory adapts App to tests.ApiScenario's TestAppFactory.
func (f *Fixture[C]) Factory() func(t testing.TB) *tests.TestApp {
	return func(t testing.TB) *tests.TestApp { return f.App(t) }
}

func (f *Fixture[C]) fill(app core.App) error {
	p, err := collections.FindDefaultProgram(app)
	if err != nil {
		return err
	}
	f.ProgramP, f.SecretP = p.Id, p.PostbackSecret()

	q, err := Save(app, collections.Programs, map[string]any{
		"name": "Q program", "slug": "q", "destination": "https://shop.example.org/",
		"currency": "eur", "commission_type": "flat", "commission_value": 500,
		"cookie_days": 30, "hold_days": 0, "min_payout": 1000, "auto_approve": true, "active": true,
	})
	if err != nil {
		return err
	}
	f.ProgramQ, f.ProgramQSecret = q.Id, q.GetString(collections.ProgramPostbackSecret)

	tier, err := Save(app, collections.Tiers, map[string]any{
		"program": p.Id, "name": "Gold", "rank": 1, "min_revenue": 100000, "commission_value": 3000,
	})
	if err != nil {
		return err
	}
	f.TierP = tier.Id

	if f.A, err = affiliate(app, "Affiliate A", "a@fixture.test", p.Id, collections.AffiliateApproved); err != nil {
		return err
	}
	if f.B, err = affiliate(app, "Affiliate B", "b@fixture.test", p.Id, collections.AffiliateApproved); err != nil {
		return err
	}
	if f.Pending, err = affiliate(app, "Pending P", "pending@fixture.test", p.Id, collections.AffiliatePending); err != nil {
		return err
	}
	if f.RowsA, err = ownedRows(app, f.A.ID, p.Id, 1000); err != nil {
		return err
	}
	if f.RowsB, err = ownedRows(app, f.B.ID, p.Id, 2000); err != nil {
		return err
	}

	superusers, err := app.FindCollectionByNameOrId(core.CollectionNameSuperusers)
	if err != nil {
		return err
	}
	su := core.NewRecord(superusers)
	su.SetEmail("admin@fixture.test")
	su.SetPassword(Password)
	if err := app.Save(su); err != nil {
		return fmt.Errorf("superuser: %w", err)
	}
	f.Superuser, err = actorOf(su)
	return err
}

// FastPasswords makes new passwords of the auth collections named cheap to hash (bcrypt's
// lowest cost, 4): a test that signs up many accounts stays fast under -race. Existing hashes
// keep working; nothing else changes.
func FastPasswords(app core.App, authCollections ...string) error {
	for _, name := range authCollections {
		c, err := app.FindCollectionByNameOrId(name)
		if err != nil {
			return err
		}
		f, ok := c.Fields.GetByName(core.FieldNamePassword).(*core.PasswordField)
		if !ok {
			return fmt.Errorf("%s has no password field", name)
		}
		f.Cost = 4 // bcrypt.MinCost
		if err := app.Save(c); err != nil {
			return err
		}
	}
	return nil
}

// Save creates a record of collection with data through app.Save (hooks and validation run),
// for building worlds (NewFixture, Derive's seed).
func Save(app core.App, collection string, data map[string]any) (*core.Record, error) {
	c, err := app.FindCollectionByNameOrId(collection)
	if err != nil {
		return nil, err
	}
	r := core.NewRecord(c)
	r.Load(data)
	if err := app.Save(r); err != nil {
		return nil, fmt.Errorf("save %s %v: %w", collection, data, err)
	}
	return r, nil
}

func affiliate(app core.App, name, email, program, status string) (Actor, error) {
	c, err := app.FindCollectionByNameOrId(collections.Affiliates)
	if err != nil {
		return Actor{}, err
	}
	r := core.NewRecord(c)
	r.Load(map[string]any{"name": name, "program": program, "status": status, "notes": "secret note about " + name})
	r.SetEmail(email)
	r.SetVerified(true)
	r.SetPassword(Password)
	if err := app.Save(r); err != nil {
		return Actor{}, fmt.Errorf("affiliate %s: %w", name, err)
	}
	return actorOf(r)
}

func actorOf(r *core.Record) (Actor, error) {
	token, err := r.NewAuthToken()
	if err != nil {
		return Actor{}, fmt.Errorf("token for %s: %w", r.Email(), err)
	}
	return Actor{ID: r.Id, Email: r.Email(), Token: token}, nil
}

// ownedRows gives an affiliate one row in every collection it owns; amount makes each
// affiliate's money distinguishable in responses.
func ownedRows(app core.App, affiliateID, programID string, amount int) (Rows, error) {
	var rows Rows
	now := types.NowDateTime()
	link, err := Save(app, collections.Links, map[string]any{"affiliate": affiliateID, "program": programID, "label": "main"})
	if err != nil {
		return rows, err
	}
	click, err := Save(app, collections.Clicks, map[string]any{
		"link": link.Id, "affiliate": affiliateID, "program": programID, "visitor": "v-" + affiliateID, "unique": true,
	})
	if err != nil {
		return rows, err
	}
	conv, err := Save(app, collections.Conversions, map[string]any{
		"affiliate": affiliateID, "program": programID, "click": click.Id, "link": link.Id, "source": "api",
		"external_id": "order-" + affiliateID, "amount": amount * 10, "currency": "usd", "status": "approved", "occurred_at": now,
	})
	if err != nil {
		return rows, err
	}
	payout, err := Save(app, collections.Payouts, map[string]any{
		"affiliate": affiliateID, "amount": amount, "currency": "usd", "method": "manual", "status": "paid",
		"idempotency_key": "key-" + affiliateID, "paid_at": now,
	})
	if err != nil {
		return rows, err
	}
	comm, err := Save(app, collections.Commissions, map[string]any{
		"affiliate": affiliateID, "program": programID, "conversion": conv.Id, "kind": "sale", "amount": amount,
		"currency": "usd", "status": "paid", "payable_at": now.Time().Add(-time.Hour), "payout": payout.Id,
	})
	if err != nil {
		return rows, err
	}
	// The figures go through the writers' functions, so every rollup derived from stats_daily
	// (hourly, dims, board) agrees with it, as the rollup checks of the tests demand.
	stamp := store.DBTime(now.Time())
	var statsID string
	err = app.RunInTransaction(func(tx core.App) error {
		key := store.StatsKeyAt(stamp, affiliateID, programID, link.Id)
		err := store.AddStats(tx, map[store.StatsKey]store.StatsDelta{key: {Clicks: 1, UniqueClicks: 1, Conversions: 1,
			Revenue: int64(amount * 10), Commission: int64(amount)}})
		if err != nil {
			return err
		}
		sqlTx, err := store.SQLTx(tx)
		if err != nil {
			return err
		}
		dims, err := store.PrepareDims(sqlTx)
		if err != nil {
			return err
		}
		defer dims.Close()
		clicks := store.DimDeltas{}
		clicks.AddClick(programID, affiliateID, key.Day, "", "", "", true)
		if err := dims.AddAll(clicks); err != nil {
			return err
		}
		return tx.DB().NewQuery("SELECT id FROM " + collections.StatsDaily + " WHERE affiliate = {:a} AND link = {:l}").
			Bind(dbx.Params{"a": affiliateID, "l": link.Id}).Row(&statsID)
	})
	if err != nil {
		return rows, fmt.Errorf("figures of %s: %w", affiliateID, err)
	}
	stats := struct{ Id string }{statsID}
	return Rows{Link: link.Id, Click: click.Id, Conversion: conv.Id, Commission: comm.Id, Payout: payout.Id, Stats: stats.Id}, nil
}
