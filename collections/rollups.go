package collections

// Rollups derived from stats_daily's writers (hooks/store owns every write to them): the
// program-wide figures per UTC hour, and clicks per country, referrer domain and sub. They are
// read by the reporting routes and never written through the records API.
const (
	// StatsProgramHourly has one row per (program, UTC hour "YYYY-MM-DD HH") with the
	// program's currency on the row: the overview's series in any time zone, no join.
	StatsProgramHourly = "stats_program_hourly"
	// StatsDims has one row per (dim, program, affiliate, day, value): clicks and unique
	// clicks by country and by referrer domain per program (affiliate ""), by sub per affiliate.
	StatsDims = "stats_dims_daily"
	// CommissionTotals has one row per (program, currency, commission status) with the sum
	// and count of the commissions in it, kept by SQLite triggers on commissions (every
	// writer, no Go code to forget): the overview's "commissions owed".
	CommissionTotals = "commission_totals"
)

// Dimensions of StatsDims.
const (
	DimCountry  = "country"
	DimReferrer = "referrer"
	DimSub      = "sub"
)
