//go:build !race

package hooks_test

// raceEnabled: see race_on_test.go.
const raceEnabled = false
