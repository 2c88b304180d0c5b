package hooks

import (
	"fmt"
	"time"

	"github.com/pocketbase/pocketbase/core"
	"github.com/spf13/cobra"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/codes"
)

// demoPassword is the password of every demo affiliate; demo data is for local trials only.
const demoPassword = "demo-password-1"

// demoAffiliates are the people `pbaffiliate demo` signs up: name and status.
func demoAffiliates() [][2]string {
	return [][2]string{
		{"Ada Lovelace", collections.AffiliateApproved},
		{"Grace Hopper", collections.AffiliateApproved},
		{"Alan Turing", collections.AffiliateApproved},
		{"Katherine Johnson", collections.AffiliatePending},
		{"Edsger Dijkstra", collections.AffiliateSuspended},
	}
}

func newDemoCommand(app core.App, conversions *conversionService, commissions *commissionEngine, payouts *payoutEngine, mail *messaging) *cobra.Command {
	days := demoHistoryDays
	cmd := &cobra.Command{
		Use:          "demo",
		Short:        "Fill the database with demo affiliates, links and 90 days of history (safe to run twice)",
		SilenceUsage: true,
		RunE: Failing(app, func(cmd *cobra.Command, args []string) error {
			if err := app.RunAllMigrations(); err != nil {
				return fmt.Errorf("migrate: %w", err)
			}
			if days < 0 || days > 365 {
				return fmt.Errorf("demo: --days must be 0 to 365, not %d", days)
			}
			people := demoAffiliates()
			if days > 0 { // the history's long tail and its other applicants
				people = append(people, demoMoreAffiliates()...)
			}
			created, err := fillDemo(app, people)
			if err != nil {
				return err
			}
			if created > 0 {
				if err := fillDemoHistory(app, conversions, commissions, payouts, mail, time.Now().UTC(), days); err != nil {
					return err
				}
				if err := fillDemoSales(conversions, commissions); err != nil {
					return err
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "demo: %d affiliates created (with %d days of clicks, sales, commissions and payouts); log in to the portal as ada-lovelace@demo.pbaffiliate.test with password %q\n", created, days, demoPassword)
			return nil
		}),
	}
	cmd.Flags().IntVar(&days, "days", demoHistoryDays, "days of history: clicks, sales, refunds, commissions, a paid payout run, a sent broadcast (0: none)")
	return cmd
}

// fillDemo creates the demo affiliates (with two links each for the approved ones) in the
// default program and returns how many affiliates it created; existing ones are left as they are.
func fillDemo(app core.App, people [][2]string) (int, error) {
	program, err := collections.FindDefaultProgram(app)
	if err != nil {
		return 0, fmt.Errorf("demo: %w", err)
	}
	affiliates, err := app.FindCollectionByNameOrId(collections.Affiliates)
	if err != nil {
		return 0, fmt.Errorf("demo: %w", err)
	}
	created := 0
	err = app.RunInTransaction(func(tx core.App) error {
		for _, person := range people {
			name, status := person[0], person[1]
			code := codes.Slug(name)
			email := code + "@demo.pbaffiliate.test"
			if _, err := tx.FindAuthRecordByEmail(affiliates, email); err == nil {
				continue
			}
			a := core.NewRecord(affiliates)
			a.Set(collections.FieldName, name)
			a.Set(collections.FieldCode, code)
			a.Set(collections.FieldProgram, program.Id)
			a.Set(collections.FieldStatus, status)
			a.SetEmail(email)
			a.SetVerified(true)
			a.SetPassword(demoPassword)
			if err := tx.Save(a); err != nil {
				return fmt.Errorf("demo affiliate %s: %w", name, err)
			}
			created++
			if status != collections.AffiliateApproved {
				continue
			}
			for _, label := range []string{"Blog", "Newsletter"} {
				l, err := newLink(tx, a.Id, program.Id, label)
				if err != nil {
					return err
				}
				if err := tx.Save(l); err != nil {
					return fmt.Errorf("demo link %s/%s: %w", name, label, err)
				}
			}
		}
		return nil
	})
	return created, err
}

// newLink prepares a link to the program's destination; the create hook assigns its code.
func newLink(app core.App, affiliateID, programID, label string) (*core.Record, error) {
	links, err := app.FindCollectionByNameOrId(collections.Links)
	if err != nil {
		return nil, fmt.Errorf("links collection: %w", err)
	}
	l := core.NewRecord(links)
	l.Set(collections.FieldAffiliate, affiliateID)
	l.Set(collections.FieldProgram, programID)
	l.Set(collections.LinkLabel, label)
	return l, nil
}

// fillDemoSales records a few past sales per approved demo affiliate and runs the commission
// engine once, so the dashboard shows money moving from the first start.
func fillDemoSales(conversions *conversionService, commissions *commissionEngine) error {
	for i, person := range demoAffiliates() {
		if person[1] != collections.AffiliateApproved {
			continue
		}
		for n := 0; n < 3; n++ {
			_, _, err := conversions.record(conversionInput{
				Source: collections.SourceManual, ExternalID: fmt.Sprintf("demo-%d-%d", i, n),
				AffiliateCode: codes.Slug(person[0]), Amount: int64(4900 + 2500*n + 1000*i), Currency: collections.DefaultCurrency,
				OccurredAt: time.Now().UTC().AddDate(0, 0, -10*n-1), Customer: fmt.Sprintf("demo-customer-%d-%d", i, n),
			})
			if err != nil {
				return fmt.Errorf("demo sale: %w", err)
			}
		}
	}
	if _, err := commissions.runNow(); err != nil {
		return fmt.Errorf("demo commissions: %w", err)
	}
	return nil
}
