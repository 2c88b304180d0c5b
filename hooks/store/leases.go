package store

import (
	"fmt"
	"time"

	"github.com/pocketbase/dbx"
)

// Leases hold one row per named lease (migration 1795479100_mail_templates).

// AcquireLease takes or renews the named lease for holder until now+ttl. It reports false
// while another holder's lease has not expired. One statement, so two processes racing for
// a free lease cannot both win: SQLite serialises writers and the upsert's WHERE decides.
// A holder that crashed loses the lease when its ttl passes.
func AcquireLease(db dbx.Builder, name, holder string, now time.Time, ttl time.Duration) (bool, error) {
	ts := DBTime(now)
	res, err := db.NewQuery(
		"INSERT INTO {{leases}} ([[id]], [[name]], [[holder]], [[expires_at]], [[created]], [[updated]]) " +
			"VALUES ({:id}, {:name}, {:holder}, {:expires}, {:now}, {:now}) " +
			"ON CONFLICT ([[name]]) DO UPDATE SET [[holder]] = excluded.[[holder]], [[expires_at]] = excluded.[[expires_at]], [[updated]] = excluded.[[updated]] " +
			"WHERE {{leases}}.[[holder]] = excluded.[[holder]] OR {{leases}}.[[expires_at]] <= excluded.[[updated]]").
		Bind(dbx.Params{"id": NewID(), "name": name, "holder": holder,
			"expires": DBTime(now.Add(ttl)), "now": ts}).Execute()
	if err != nil {
		return false, fmt.Errorf("acquire lease %s: %w", name, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("acquire lease %s: %w", name, err)
	}
	return n == 1, nil
}

// ReleaseLease gives the lease up early so another process need not wait for its expiry.
func ReleaseLease(db dbx.Builder, name, holder string, now time.Time) error {
	ts := DBTime(now)
	_, err := db.NewQuery(
		"UPDATE {{leases}} SET [[expires_at]] = {:now}, [[updated]] = {:now} WHERE [[name]] = {:name} AND [[holder]] = {:holder}").
		Bind(dbx.Params{"name": name, "holder": holder, "now": ts}).Execute()
	if err != nil {
		return fmt.Errorf("release lease %s: %w", name, err)
	}
	return nil
}
