package collections

// ClickOverflow counts the flagged clicks stored as no row of their own: those of an IP past
// PBA_CLICK_IP_CEILING rows in an hour (hooks/click_overflow.go). Superusers only.
const ClickOverflow = "click_overflow"

// click_overflow fields (besides ip_hash, program, affiliate, link, flag and updated). The
// ids are plain text, not relations, as in inactive_redirects.
const (
	OverflowHour   = "hour"   // the UTC hour the clicks fell in (a date, minutes zero)
	OverflowClicks = "clicks" // how many
)
