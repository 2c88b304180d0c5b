//go:build race

package hooks_test

// raceEnabled shortens tests whose length only buys confidence, not coverage, under the race
// detector's 5-10x slowdown; `make test` runs them in full without it.
const raceEnabled = true
