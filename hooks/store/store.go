// Package store is the one home of the plumbing every capability of pbaffiliate shares:
// record ids, database time, the SQL transaction under a PocketBase one, leases, the
// stats_daily rollups and commission balances. It imports PocketBase's core, dbx and
// collections only, so any capability may use it and it uses none of them.
package store
