package main

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
)

// TestCommandsExitNonZeroOnFailure runs the commands that change data as the binary: a
// failure prints its reason and exits non-zero (scripts and cron jobs see it); the same
// command that succeeds exits 0.
func TestCommandsExitNonZeroOnFailure(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ args, want string }{
		{"demo --days=400 --dir=" + dir, "--days must be 0 to 365"},
		{"payouts run --program no-such-program --dir=" + dir, "no-such-program"},
		{"payouts run --dry-run --program no-such-program --dir=" + dir, "no-such-program"},
	} {
		out, err := runProgram(t, c.args).CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() == 0 || !strings.Contains(string(out), c.want) {
			t.Errorf("%s: err=%v, want a non-zero exit and %q in:\n%s", c.args, err, c.want, out)
		}
	}
	if out, err := runProgram(t, "payouts run --dry-run --dir="+dir).CombinedOutput(); err != nil {
		t.Errorf("payouts run --dry-run on a fine data dir: %v\n%s", err, out)
	}
}
