package store

import (
	"time"

	"github.com/pocketbase/pocketbase/tools/types"
)

// DateLayout is how PocketBase stores date fields ("2006-01-02 15:04:05.000Z", UTC). Rows
// written with it compare and sort correctly as strings in SQL, and their first 10 and 7
// characters are the UTC day and month.
const DateLayout = types.DefaultDateLayout

// DBTime formats t the way PocketBase stores dates, for raw SQL writes and comparisons.
func DBTime(t time.Time) string {
	return t.UTC().Format(DateLayout)
}

// ParseDBTime reads a date field as stored by PocketBase.
func ParseDBTime(s string) (time.Time, error) {
	return time.Parse(DateLayout, s)
}
