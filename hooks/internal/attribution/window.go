package attribution

import "time"

// Problems with the time a sender gives for a sale (SaleTimeProblem).
const (
	TimeInFuture    = "in_future"
	TimeTooOld      = "too_old"
	TimeBeforeClick = "before_click"
)

// SaleTimeProblem says what is wrong with a sale reported now as having happened at: later
// than now, earlier than the program's attribution window (cookieDays back from now; 0 = no
// window, for imported history), or before the click it names (clickCreated; zero = none).
// The clocks of the sender and of the click may differ by clockSkew. "" means the time is
// plausible.
func SaleTimeProblem(at, now time.Time, cookieDays int, clickCreated time.Time) string {
	switch {
	case at.After(now.Add(clockSkew)):
		return TimeInFuture
	case cookieDays > 0 && at.Before(now.AddDate(0, 0, -cookieDays)):
		return TimeTooOld
	case !clickCreated.IsZero() && at.Before(clickCreated.Add(-clockSkew)):
		return TimeBeforeClick
	}
	return ""
}
