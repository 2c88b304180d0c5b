// Package surveyround decides when a survey is due: its round, the time it is sent for, which
// is also the key of one answer per affiliate. Pure logic over robfig/cron specs.
package surveyround

import (
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// maxCatchUp bounds the walk over missed occurrences (a minutely schedule after a long stop).
const maxCatchUp = 100000

// Presets are the schedules the back office offers, by name.
func Presets() map[string]string {
	return map[string]string{
		"monthly":   "0 9 1 * *",
		"quarterly": "0 9 1 1,4,7,10 *",
		"yearly":    "0 9 1 1 *",
	}
}

// Check says what is wrong with a schedule: "" (once, at send_at) or a 5-field cron spec,
// optionally with CRON_TZ=Area/City.
func Check(schedule string) error {
	if strings.TrimSpace(schedule) == "" {
		return nil
	}
	if _, err := cron.ParseStandard(schedule); err != nil {
		return fmt.Errorf("must be a 5-field cron spec such as %q (quarterly), optionally prefixed with CRON_TZ=Area/City: %w",
			Presets()["quarterly"], err)
	}
	return nil
}

// Due returns the round to send now, if any. A survey without schedule has one round, sendAt,
// due once now has reached it. A scheduled one has a round at each occurrence after the later
// of lastSent, created and just before sendAt; when several were missed only the latest is sent.
// A round is never the lastSent one again.
func Due(schedule string, sendAt, lastSent, created, now time.Time) (time.Time, bool, error) {
	if strings.TrimSpace(schedule) == "" {
		if sendAt.IsZero() || sendAt.After(now) || !lastSent.IsZero() && !lastSent.Before(sendAt) {
			return time.Time{}, false, nil
		}
		return sendAt, true, nil
	}
	sched, err := cron.ParseStandard(schedule)
	if err != nil {
		return time.Time{}, false, err
	}
	from := created
	if !sendAt.IsZero() && sendAt.Add(-time.Second).After(from) {
		from = sendAt.Add(-time.Second)
	}
	if lastSent.After(from) {
		from = lastSent
	}
	next := sched.Next(from)
	if next.IsZero() || next.After(now) {
		return time.Time{}, false, nil
	}
	for i := 0; i < maxCatchUp; i++ {
		after := sched.Next(next)
		if after.IsZero() || after.After(now) {
			break
		}
		next = after
	}
	return next.UTC(), true, nil
}

// Key is a round as deliveries, feedback and tokens name it: its UTC time to the second, with
// no dot (tokens are dot-separated).
func Key(round time.Time) string {
	return round.UTC().Format("20060102T150405Z")
}

// ParseKey reads a Key.
func ParseKey(key string) (time.Time, error) {
	return time.Parse("20060102T150405Z", key)
}
