package hooks

import (
	"cmp"
	"encoding/csv"
	"fmt"
	"net/http"
	"strings"

	"github.com/pocketbase/pocketbase/core"
	"github.com/spf13/cobra"

	"github.com/pbaffiliate/pbaffiliate/hooks/internal/csvsafe"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/money"
)

// handlePreview answers GET /api/pba/payouts/preview[?program=] (superusers): what a run
// would pay now, and why not where it would not.
func (e *payoutEngine) handlePreview(re *core.RequestEvent) error {
	reports, err := e.runNow(re.Request.URL.Query().Get("program"), true)
	if err != nil {
		return payoutError(re, err)
	}
	return re.JSON(http.StatusOK, map[string]any{"programs": reports})
}

// handleRun answers POST /api/pba/payouts/run[?program=] (superusers): a manual run, then
// the Stripe transfers it made due.
func (e *payoutEngine) handleRun(re *core.RequestEvent) error {
	reports, err := e.runNow(re.Request.URL.Query().Get("program"), false)
	if err != nil {
		return payoutError(re, err)
	}
	if err := e.executeDue(re.Request.Context()); err != nil {
		return re.InternalServerError("Payouts were created but some Stripe transfers failed: see each payout's status and error (retryable ones are retried).", err)
	}
	return re.JSON(http.StatusOK, map[string]any{"programs": reports})
}

// handleManualPayoutsCSV answers GET /api/pba/export/payouts.csv[?format=paypal|wise] (superusers).
func handleManualPayoutsCSV(re *core.RequestEvent) error {
	return exportManualPayouts(re, re.Request.URL.Query().Get("format"))
}

// errUnknownProgram is a program filter that matches nothing.
type errUnknownProgram string

func (e errUnknownProgram) Error() string { return "unknown program " + string(e) }

func payoutError(re *core.RequestEvent, err error) error {
	if _, ok := err.(errUnknownProgram); ok {
		return re.BadRequestError("Unknown program.", fieldError("program", "unknown_program", "No program has this id or slug."))
	}
	return re.InternalServerError("", err)
}

// newPayoutsCommand is `pbaffiliate payouts run [--dry-run] [--program]`.
func newPayoutsCommand(app core.App, e *payoutEngine) *cobra.Command {
	cmd := &cobra.Command{Use: "payouts", Short: "Payout runs"}
	var dryRun bool
	var program string
	run := &cobra.Command{
		Use:          "run",
		Short:        "Pay every affiliate whose payable balance reaches the program's minimum (or --dry-run to preview)",
		SilenceUsage: true,
		RunE: Failing(app, func(c *cobra.Command, args []string) error {
			if err := app.RunAllMigrations(); err != nil {
				return fmt.Errorf("migrate: %w", err)
			}
			reports, err := e.runNow(program, dryRun)
			if err != nil {
				return err
			}
			if !dryRun {
				if err := e.executeDue(c.Context()); err != nil {
					return err
				}
			}
			out := c.OutOrStdout()
			for _, r := range reports {
				fmt.Fprintf(out, "program %s: %d payouts, %d in total (dry run: %v)\n", r.Program, r.Payouts, r.Total, r.DryRun)
				for _, l := range r.Lines {
					fmt.Fprintf(out, "  %-15s %-30s %12s %s %-13s %s\n", l.Affiliate, l.Email, money.Format(l.Amount, l.Currency),
						l.Currency, l.Action, l.Reason)
				}
			}
			return nil
		}),
	}
	run.Flags().BoolVar(&dryRun, "dry-run", false, "show what would be paid, change nothing")
	run.Flags().StringVar(&program, "program", "", "only this program (id or slug)")
	cmd.AddCommand(run)
	return cmd
}

// exportManualPayouts writes the pending manual payouts as a mass-payout file: PayPal Payouts
// (format=paypal, the default) or Wise batch payments (format=wise).
func exportManualPayouts(re *core.RequestEvent, format string) error {
	var rows []struct {
		ID       string `db:"id"`
		Amount   int64  `db:"amount"`
		Currency string `db:"currency"`
		Name     string `db:"name"`
		Email    string `db:"email"`
		PayTo    string `db:"payout_email"`
	}
	err := re.App.DB().NewQuery(`SELECT p.id AS id, p.amount AS amount, p.currency AS currency, a.name AS name, a.email AS email,
			a.payout_email AS payout_email
		FROM payouts p JOIN affiliates a ON a.id = p.affiliate
		WHERE p.method = 'manual' AND p.status = 'pending' ORDER BY p.created`).All(&rows)
	if err != nil {
		return re.InternalServerError("", err)
	}
	var header []string
	switch format {
	case "", "paypal":
		header = []string{"Email", "Amount", "Currency", "Reference", "Note"}
	case "wise":
		header = []string{"name", "recipientEmail", "paymentReference", "receiverType", "amountCurrency", "amount", "sourceCurrency", "targetCurrency"}
	default:
		return re.BadRequestError("Unknown format.", fieldError("format", "invalid", "paypal or wise"))
	}
	re.Response.Header().Set("Content-Type", "text/csv; charset=utf-8")
	re.Response.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="payouts-%s.csv"`, strings.TrimPrefix(format+"-manual", "-")))
	w := csv.NewWriter(re.Response)
	_ = w.Write(header)
	for _, r := range rows {
		// The name and both addresses are the affiliate's own typing: defused like every export.
		to := csvsafe.Cell(cmp.Or(r.PayTo, r.Email))
		amount, cur := money.Format(r.Amount, r.Currency), strings.ToUpper(r.Currency)
		if format == "wise" {
			_ = w.Write([]string{csvsafe.Cell(r.Name), to, r.ID, "PRIVATE", "target", amount, cur, cur})
		} else {
			_ = w.Write([]string{to, amount, cur, r.ID, "Affiliate commissions"})
		}
	}
	w.Flush()
	return w.Error()
}
