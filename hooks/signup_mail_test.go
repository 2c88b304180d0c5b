package hooks_test

import (
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pocketbase/pocketbase/tools/mailer"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// A stranger signs up with a victim's address and a phishing sentence as the name, through
// the records API as the portal does: the victim gets PocketBase's verification mail and the
// application mail (the welcome of an auto-approving program), and neither carries the
// sentence nor the code made from it. Following the verification link verifies the address.
func TestSignupMailCarriesNoSignerText(t *testing.T) {
	env := newClickEnv(t, fx.Config)
	settings := env.app.Settings()
	settings.SMTP.Enabled, settings.SMTP.Host = true, "127.0.0.1" // the test app's mailer records instead
	if err := env.app.Save(settings); err != nil {
		t.Fatal(err)
	}
	const phish = "URGENT your account is locked verify at https evil example"
	signup := func(email, program string) {
		body := fmt.Sprintf(`{"email":%q,"name":%q,"password":"long-password-1","passwordConfirm":"long-password-1","program":%q}`, email, phish, program)
		if res := pbatest.Request(env.handler, http.MethodPost, "/api/collections/affiliates/records", "", body); res.Code != http.StatusOK {
			t.Fatalf("signup %s: %d %s", email, res.Code, res.Body)
		}
	}
	signup("victim-p@example.org", fx.ProgramP) // pending: application received
	signup("victim-q@example.org", fx.ProgramQ) // auto-approved: the welcome
	victims := []string{"victim-p@example.org", "victim-q@example.org"}
	mails := waitMails(t, env, 2, victims...)
	var token string
	byTo := map[string][]string{}
	for _, m := range mails {
		to := m.To[0].Address
		if !slices.Contains(victims, to) {
			continue // the fixture's own affiliates' mails
		}
		byTo[to] = append(byTo[to], m.Subject)
		for _, part := range []string{m.Subject, m.HTML, m.Text} {
			if strings.Contains(strings.ToLower(part), "urgent") || strings.Contains(part, "evil") {
				t.Errorf("mail %q to %s carries the signer's text:\n%s", m.Subject, to, part)
			}
		}
		if to == "victim-p@example.org" {
			if match := regexp.MustCompile(`/portal/#/verify/([\w.-]+)`).FindStringSubmatch(m.HTML); match != nil {
				token = match[1]
			}
		}
	}
	if len(byTo["victim-p@example.org"]) != 2 || len(byTo["victim-q@example.org"]) != 2 || token == "" {
		t.Fatalf("mails %v (verification token found: %v), want a verification and an application mail each", byTo, token != "")
	}

	if res := pbatest.Request(env.handler, http.MethodPost, "/api/collections/affiliates/confirm-verification", "", fmt.Sprintf(`{"token":%q}`, token)); res.Code != http.StatusNoContent {
		t.Fatalf("confirm verification: %d %s", res.Code, res.Body)
	}
	victim, err := env.app.FindAuthRecordByEmail(collections.Affiliates, "victim-p@example.org")
	if err != nil || !victim.Verified() {
		t.Fatalf("after the link: verified %v (%v)", victim != nil && victim.Verified(), err)
	}

	// A signup inside a batch request (one transaction) is mailed once it has committed, and
	// not at all when the batch fails.
	settings.Batch.Enabled, settings.Batch.Timeout = true, 60 // a password hash takes seconds under -race
	if err := env.app.Save(settings); err != nil {
		t.Fatal(err)
	}
	create := func(email, password string) string {
		return fmt.Sprintf(`{"method":"POST","url":"/api/collections/affiliates/records","body":{"email":%q,"name":"Batch","password":%q,"passwordConfirm":%q}}`,
			email, password, password)
	}
	failed := `{"requests":[` + create("rolled-back@example.org", "long-password-1") + "," + create("broken@example.org", "") + `]}`
	if res := pbatest.Request(env.handler, http.MethodPost, "/api/batch", "", failed); res.Code != http.StatusBadRequest {
		t.Fatalf("failing batch: %d %s", res.Code, res.Body)
	}
	if res := pbatest.Request(env.handler, http.MethodPost, "/api/batch", "", `{"requests":[`+create("batch@example.org", "long-password-1")+`]}`); res.Code != http.StatusOK {
		t.Fatalf("batch signup: %d %s", res.Code, res.Body)
	}
	for _, m := range waitMails(t, env, 2, "batch@example.org") {
		if m.To[0].Address == "rolled-back@example.org" {
			t.Errorf("a signup rolled back with its batch got %q", m.Subject)
		}
	}
}

// waitMails waits for the mail worker (and the verification mails sent in the background)
// to hand at least n mails for each of to to the test mailer, and returns every mail sent.
func waitMails(t *testing.T, env *clickEnv, n int, to ...string) []*mailer.Message {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second) // generous for -race on a busy machine; returns as soon as they are there
	for {
		mails := env.app.TestMailer.Messages()
		count := map[string]int{}
		for _, m := range mails {
			count[m.To[0].Address]++
		}
		done := true
		for _, addr := range to {
			done = done && count[addr] >= n
		}
		if done {
			return mails
		}
		if time.Now().After(deadline) {
			t.Fatalf("mails after 30 s: %v, want %d for each of %v", count, n, to)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
