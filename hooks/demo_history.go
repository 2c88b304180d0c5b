package hooks

import (
	"context"
	"fmt"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/clickpolicy"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/codes"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/demoplan"
	"github.com/pbaffiliate/pbaffiliate/hooks/store"
)

// demoHistoryDays is how far back the demo's history goes by default (`demo --days`).
const demoHistoryDays = 90

// demoReach is each approved demo affiliate's clicks a day (by the end of the history), in the
// order of demoAffiliates and demoMoreAffiliates: a few stars and a long tail.
var demoReach = map[string]float64{
	"ada-lovelace": 55, "grace-hopper": 40, "alan-turing": 28, "barbara-liskov": 20, "donald-knuth": 14,
	"margaret-hamilton": 10, "dennis-ritchie": 7, "frances-allen": 5, "radia-perlman": 3,
}

// demoMoreAffiliates join the named five: approved ones with traffic, and two more
// applications waiting for a decision.
func demoMoreAffiliates() [][2]string {
	return [][2]string{
		{"Barbara Liskov", collections.AffiliateApproved},
		{"Donald Knuth", collections.AffiliateApproved},
		{"Margaret Hamilton", collections.AffiliateApproved},
		{"Dennis Ritchie", collections.AffiliateApproved},
		{"Frances Allen", collections.AffiliateApproved},
		{"Radia Perlman", collections.AffiliateApproved},
		{"Hedy Lamarr", collections.AffiliatePending},
		{"Claude Shannon", collections.AffiliatePending},
	}
}

var (
	demoReferrers = []string{"https://www.google.com/", "https://news.ycombinator.com/", "https://www.youtube.com/", "https://www.reddit.com/", "", ""}
	demoCountries = []string{"US", "US", "US", "GB", "DE", "FR", "CA", "NL", "AU", "ES"}
	demoAgents    = []string{
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 Safari/605.1.15",
	}
)

// demoClickInsert writes one historical click, as the click writer would have.
const demoClickInsert = "INSERT INTO clicks (" + clickColumns + ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '', ?)"

// fillDemoHistory gives the demo historyDays (90) days of life: clicks with a daily and weekly rhythm and
// their stats_daily rows, sales attributed to those clicks (some refunded), tiers, a payout
// paid last month, payable balances and held commissions, a sent and a draft broadcast. The sales go
// through the conversion service and the commission engine, the payout through the payout
// engine and a paid mark; only the dates of the history are set directly (a demo's history was
// "recorded" when it happened, so its commissions' holds end when they would have).
func fillDemoHistory(app core.App, conversions *conversionService, commissions *commissionEngine, payouts *payoutEngine, mail *messaging, now time.Time, historyDays int) error {
	if historyDays <= 0 {
		return nil
	}
	program, err := collections.FindDefaultProgram(app)
	if err != nil {
		return fmt.Errorf("demo history: %w", err)
	}
	if err := demoTiers(app, program.Id); err != nil {
		return err
	}
	var imported []string // the history's sales, oldest first
	for i, person := range append(demoAffiliates(), demoMoreAffiliates()...) {
		code := codes.Slug(person[0])
		reach, ok := demoReach[code]
		if !ok || person[1] != collections.AffiliateApproved {
			continue
		}
		a, err := app.FindFirstRecordByData(collections.Affiliates, collections.FieldCode, code)
		if err != nil {
			return fmt.Errorf("demo history: affiliate %s: %w", code, err)
		}
		var links []string
		if err := app.DB().Select("id").From(collections.Links).Where(dbx.HashExp{"affiliate": a.Id}).OrderBy("created").Column(&links); err != nil {
			return err
		}
		days := demoplan.Plan(uint64(i+1), demoplan.Profile{ClicksPerDay: reach, Conversion: 0.015}, now.Add(-time.Hour), historyDays)
		clickIDs, err := demoClicks(app, a.Id, program.Id, links, days)
		if err != nil {
			return err
		}
		for d, day := range days {
			for n, s := range day.Sales {
				rec, _, err := conversions.record(conversionInput{
					Source: collections.SourceManual, ExternalID: fmt.Sprintf("hist-%s-%d-%d", code, d, n),
					ClickID: clickIDs[d][s.Click], Amount: s.Amount, Currency: program.GetString(collections.FieldCurrency),
					OccurredAt: s.At, Customer: fmt.Sprintf("cus-%s-%d-%d", code, d, n), Imported: true,
				})
				if err != nil {
					return fmt.Errorf("demo history sale: %w", err)
				}
				imported = append(imported, rec.Id)
				if s.Refunded > 0 {
					rec.Set(collections.ConversionRefundedAmount, s.Refunded)
					if s.Refunded == s.Amount {
						rec.Set(collections.FieldStatus, collections.ConversionRefunded)
					}
					if err := app.Save(rec); err != nil {
						return fmt.Errorf("demo history refund: %w", err)
					}
				}
			}
		}
	}
	if _, err := commissions.runNow(); err != nil {
		return fmt.Errorf("demo commissions: %w", err)
	}
	// Commissions of sales older than 60 days were paid last month; those of the month after
	// are payable now; the last 30 days are still held.
	hold := time.Duration(program.GetInt(collections.ProgramHoldDays)) * 24 * time.Hour
	if err := demoRelease(app, commissions, imported, now.AddDate(0, 0, -60), hold); err != nil {
		return err
	}
	paidOn := time.Date(now.Year(), now.Month(), 1, 9, 0, 0, 0, time.UTC)
	if err := demoPaidRun(app, payouts, program.Id, paidOn); err != nil {
		return err
	}
	if err := demoRelease(app, commissions, imported, now.Add(-hold), hold); err != nil {
		return err
	}
	return demoBroadcast(app, mail, program.Id, now)
}

// demoClicks inserts the planned clicks of one affiliate with their stats_daily rows in one
// transaction and returns their ids per day.
func demoClicks(app core.App, affiliate, program string, links []string, days []demoplan.Day) ([][]string, error) {
	ids := make([][]string, len(days))
	err := app.RunInTransaction(func(tx core.App) error {
		sqlTx, err := store.SQLTx(tx)
		if err != nil {
			return err
		}
		stmt, err := sqlTx.Prepare(demoClickInsert)
		if err != nil {
			return fmt.Errorf("demo clicks: %w", err)
		}
		defer stmt.Close()
		deltas := map[store.StatsKey]store.StatsDelta{}
		dims := store.DimDeltas{}
		n := 0
		for d, day := range days {
			for c, at := range day.Clicks {
				n++
				link := ""
				if len(links) > 0 && n%4 != 0 { // most clicks come through a link, some through the affiliate's code
					link = links[n%len(links)]
				}
				id := store.NewOrderedID(at)
				ids[d] = append(ids[d], id)
				unique := day.Unique[c]
				ip := clickpolicy.HashIP([]byte("pbaffiliate-demo"), fmt.Sprintf("198.51.100.%d", n%250))
				if _, err := stmt.Exec(id, link, affiliate, program, id, ip, demoAgents[n%len(demoAgents)],
					demoReferrers[n%len(demoReferrers)], demoCountries[n%len(demoCountries)], "", unique, store.DBTime(at)); err != nil {
					return fmt.Errorf("demo click: %w", err)
				}
				k := store.StatsKeyOf(at, affiliate, program, link)
				dims.AddClick(program, affiliate, k.Day, demoCountries[n%len(demoCountries)],
					clickpolicy.ReferrerDomain(demoReferrers[n%len(demoReferrers)]), "", unique)
				delta := deltas[k]
				delta.Clicks++
				if unique {
					delta.UniqueClicks++
				}
				deltas[k] = delta
			}
		}
		if err := store.AddStats(tx, deltas); err != nil {
			return err
		}
		dimsStmt, err := store.PrepareDims(sqlTx)
		if err != nil {
			return err
		}
		defer dimsStmt.Close()
		return dimsStmt.AddAll(dims)
	})
	return ids, err
}

// demoRelease ends the hold of the history's commissions whose sales happened before
// cutoff (their payable date becomes the sale's time plus the hold), then lets the engine
// release them.
func demoRelease(app core.App, commissions *commissionEngine, sales []string, cutoff time.Time, hold time.Duration) error {
	err := app.RunInTransaction(func(tx core.App) error {
		for _, id := range sales {
			var occurred string
			if err := tx.DB().Select(collections.ConversionOccurredAt).From(collections.Conversions).Where(dbx.HashExp{"id": id}).Row(&occurred); err != nil {
				return err
			}
			at, err := store.ParseDBTime(occurred)
			if err != nil || !at.Before(cutoff) {
				continue
			}
			_, err = tx.DB().Update(collections.Commissions, dbx.Params{collections.CommissionPayableAt: store.DBTime(at.Add(hold))},
				dbx.HashExp{collections.CommissionConversion: id, collections.FieldStatus: collections.CommissionPending}).Execute()
			if err != nil {
				return fmt.Errorf("demo hold: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if _, err := commissions.runNow(); err != nil {
		return fmt.Errorf("demo release: %w", err)
	}
	return nil
}

// demoPaidRun runs the program's payouts now and marks every manual payout of the run paid,
// as an admin does after paying them, dated paidOn.
func demoPaidRun(app core.App, payouts *payoutEngine, program string, paidOn time.Time) error {
	reports, err := payouts.runNow(program, false)
	if err != nil {
		return fmt.Errorf("demo payout run: %w", err)
	}
	for _, r := range reports {
		for _, l := range r.Lines {
			if l.Payout == "" {
				continue
			}
			p, err := app.FindRecordById(collections.Payouts, l.Payout)
			if err != nil {
				return err
			}
			p.Set(collections.FieldStatus, collections.PayoutPaid)
			p.Set("reference", "PP-DEMO-"+paidOn.Format("200601")+"-"+l.Affiliate[:5])
			if err := app.Save(p); err != nil {
				return fmt.Errorf("demo payout paid: %w", err)
			}
			if _, err := app.DB().Update(collections.Payouts, dbx.Params{"created": store.DBTime(paidOn), collections.PayoutPaidAt: store.DBTime(paidOn.Add(2 * time.Hour))},
				dbx.HashExp{"id": p.Id}).Execute(); err != nil {
				return err
			}
		}
		if r.Run != "" {
			if _, err := app.DB().Update("payout_runs", dbx.Params{"scheduled_for": store.DBTime(paidOn), "created": store.DBTime(paidOn)},
				dbx.HashExp{"id": r.Run}).Execute(); err != nil {
				return err
			}
		}
	}
	return nil
}

// demoTiers adds two tiers to the program and puts the two busiest affiliates in them.
func demoTiers(app core.App, program string) error {
	tiers, err := app.FindCollectionByNameOrId(collections.Tiers)
	if err != nil {
		return err
	}
	for i, t := range []struct {
		name, member string
		revenue      int64
		rate         int
	}{{"Silver", "grace-hopper", 50000, 2500}, {"Gold", "ada-lovelace", 150000, 3000}} {
		r := core.NewRecord(tiers)
		r.Set(collections.FieldProgram, program)
		r.Set(collections.FieldName, t.name)
		r.Set(collections.TierRank, i+1)
		r.Set(collections.TierMinRevenue, t.revenue)
		r.Set(collections.TierCommissionValue, t.rate)
		if err := app.Save(r); err != nil {
			return fmt.Errorf("demo tier %s: %w", t.name, err)
		}
		a, err := app.FindFirstRecordByData(collections.Affiliates, collections.FieldCode, t.member)
		if err != nil {
			return err
		}
		a.Set(collections.AffiliateTier, r.Id)
		a.Set(collections.AffiliateTags, []string{"newsletter", "top"})
		if err := app.Save(a); err != nil {
			return fmt.Errorf("demo tier member: %w", err)
		}
	}
	return nil
}

// demoBroadcast leaves two broadcasts in Messages: one sent two weeks before now to the
// approved affiliates, with its delivery counts (through the log sender: the demo mails
// nobody), and a draft ready to be sent from the back office.
func demoBroadcast(app core.App, mail *messaging, program string, now time.Time) error {
	messages, err := app.FindCollectionByNameOrId(collections.Messages)
	if err != nil {
		return err
	}
	audience := map[string]any{"program": program, "status": collections.AffiliateApproved}
	sent := core.NewRecord(messages)
	sent.Set(collections.MessageKind, collections.MessageKindBroadcast)
	sent.Set(collections.FieldStatus, collections.MessageDraft)
	sent.Set(collections.MessageSubject, "New: a 30-day cookie on every link, {{.Name}}")
	sent.Set(collections.MessageBody, "Hi {{.Name}},\n\nFrom today every click on your links counts for 30 days.\nYour link: {{.Link}}\n\nThank you for sharing us.")
	sent.Set(collections.MessageAudience, audience)
	if err := app.Save(sent); err != nil {
		return fmt.Errorf("demo broadcast: %w", err)
	}
	if err := mail.sendNowWith(context.Background(), sent.Id, logMailSender{app: app}); err != nil {
		return fmt.Errorf("demo broadcast: %w", err)
	}
	// Sent two weeks ago, as the history has it.
	at := store.DBTime(now.AddDate(0, 0, -14))
	if _, err := app.DB().Update(collections.Messages, dbx.Params{"created": at, "updated": at, collections.MessageResolvedAt: at},
		dbx.HashExp{"id": sent.Id}).Execute(); err != nil {
		return fmt.Errorf("demo broadcast date: %w", err)
	}
	if _, err := app.DB().Update(collections.Deliveries, dbx.Params{"created": at, "updated": at, collections.DeliverySentAt: at, collections.DeliveryNextAttemptAt: at},
		dbx.HashExp{collections.DeliveryMessage: sent.Id}).Execute(); err != nil {
		return fmt.Errorf("demo broadcast date: %w", err)
	}

	m := core.NewRecord(messages)
	m.Set(collections.MessageKind, collections.MessageKindBroadcast)
	m.Set(collections.FieldStatus, collections.MessageDraft)
	m.Set(collections.MessageSubject, "Our spring sale starts Monday, {{.Name}}")
	m.Set(collections.MessageBody, "Hi {{.Name}},\n\nOur spring sale starts on Monday: 20% off every plan for two weeks.\nShare your link: {{.Link}}\n\nYour payable balance: {{.Balance.Payable}}.")
	m.Set(collections.MessageAudience, audience)
	return app.Save(m)
}
