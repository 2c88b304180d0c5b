package hooks

import (
	"cmp"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/rules"
	"github.com/pbaffiliate/pbaffiliate/hooks/store"
)

// Cron jobs of the commission engine (visible and runnable in the dashboard).
const (
	commissionsCronJob = "pbaCommissions"
	tiersCronJob       = "pbaTiers"
)

// commissionBatch is how many conversions one engine transaction handles: large enough to
// amortize the commit and checkpoint (10,000 costs ~4% less CPU per conversion than 5,000),
// small enough that the single write connection is never held for long (~0.2 s while a
// backlog is caught up; a minute's worth of sales is usually one short batch).
const commissionBatch = 10000

// engineStats is what one run of the engine did.
type engineStats struct {
	Created  int  `json:"created"`  // sale/recurring commissions
	Zero     int  `json:"zero"`     // conversions that earn nothing
	Refunds  int  `json:"refunds"`  // conversions whose refunds were applied
	Released int  `json:"released"` // pending → payable
	Bonuses  int  `json:"bonuses"`
	Skipped  bool `json:"skipped"` // another run was in progress
}

// commissionEngine turns approved conversions into commissions, releases them when their hold
// ends, applies refunds (reducing or voiding unpaid commissions, clawing back paid ones) and
// pays milestone bonuses. Every step is an idempotent statement in a transaction, so a crash
// at any line or two processes running it at once can neither double nor lose a commission.
type commissionEngine struct {
	app  core.App
	live *liveHub
	now  func() time.Time
	mu   sync.Mutex // one run at a time in this process
	// refundsListed, when set (tests), runs between listing the refunds to apply and applying
	// them: where another writer's edit can land.
	refundsListed func()
}

// newCommissionEngine builds the engine; live may be nil (CLI commands broadcast nothing).
func newCommissionEngine(app core.App, live *liveHub) *commissionEngine {
	return &commissionEngine{app: app, live: live, now: time.Now}
}

// registerCommissions runs the engine and the tier evaluation from cron and binds the
// commission and conversion record hooks; routes.go serves its routes.
func registerCommissions(app core.App, live *liveHub) *commissionEngine {
	e := newCommissionEngine(app, live)
	m := metricsOf(app)
	app.Cron().MustAdd(commissionsCronJob, "* * * * *", func() {
		start := time.Now()
		st, err := e.run()
		if err != nil {
			app.Logger().Error("commission engine run failed", "error", err)
		}
		if !st.Skipped {
			m.commissionRun.Observe(time.Since(start).Seconds())
		}
		m.jobDone(commissionsCronJob, err)
	})
	app.Cron().MustAdd(tiersCronJob, "15 0 * * *", func() {
		period := previousMonth(e.now())
		_, err := evaluateTiers(app, period, tiersCronJob)
		if err != nil {
			app.Logger().Error("tier evaluation failed", "period", period, "error", err)
		}
		m.jobDone(tiersCronJob, err)
	})
	registerCommissionRecords(app)
	registerConversionEdits(app, live)
	return e
}

// run is one pass of the engine; it returns at once (Skipped) when a pass is already running,
// which suits the cron: the running pass does the work.
func (e *commissionEngine) run() (engineStats, error) {
	if !e.mu.TryLock() {
		return engineStats{Skipped: true}, nil
	}
	defer e.mu.Unlock()
	return e.pass()
}

// runNow is one pass that waits for a running one to end first. A caller asking for a pass
// now (the run route, demo, tests) must see every sale committed before it asked, which a
// skip beside the cron's pass of the same minute would not give.
func (e *commissionEngine) runNow() (engineStats, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.pass()
}

// pass is one pass of the engine under e.mu.
func (e *commissionEngine) pass() (engineStats, error) {
	var st engineStats
	for {
		n, err := e.createBatch(&st)
		if err != nil {
			return st, err
		}
		if n < commissionBatch {
			break
		}
	}
	if err := e.applyRefunds(&st); err != nil {
		return st, err
	}
	if err := e.evaluateBonuses(&st); err != nil {
		return st, err
	}

	released, err := e.releasePayable()
	st.Released = released
	return st, err
}

// pendingConversion is an approved sale the engine has not handled yet.
type pendingConversion struct {
	rowid          int64
	ID             string
	Affiliate      string
	Program        string
	Link           string
	Amount         int64
	Currency       string
	Status         string
	OccurredAt     string
	Created        string // when it was recorded: its hold starts then (holds.go)
	SubscriptionID string
	PaymentNumber  int
}

// monthKey is an affiliate's calendar month in a program (bonus evaluation).
type monthKey struct{ affiliate, program, month string }

// createBatch handles up to commissionBatch unhandled conversions in one transaction and
// returns how many it looked at.
func (e *commissionEngine) createBatch(st *engineStats) (int, error) {
	n := 0
	live := map[string]int64{}
	now := e.now().UTC()
	err := e.app.RunInTransaction(func(tx core.App) error {
		sqlTx, err := store.SQLTx(tx)
		if err != nil {
			return err
		}
		// Selected inside the write transaction, so nothing can change between choosing the
		// conversions and marking them handled.
		batch, err := selectNewConversions(sqlTx)
		if err != nil || len(batch) == 0 {
			return err
		}
		n = len(batch)
		w := commissionWriter{tx: sqlTx, events: newEventEmitter(tx), stats: map[store.StatsKey]store.StatsDelta{}, totals: map[store.TotalsKey]store.TotalsDelta{}, stamp: store.DBTime(now), st: st, live: live, touched: map[monthKey]bool{}}
		defer w.close()
		ctx := newRuleContext(tx)
		if err := ctx.loadAffiliates(sqlTx, batch); err != nil {
			return err
		}
		// Computed in the batch's order, written in conversion id order: the unique
		// (conversion, kind) index then takes the batch's keys in order, page after page,
		// instead of at random places.
		type pendingInsert struct {
			c               *pendingConversion
			kind, payableAt string
			amount          int64
			explanation     string
		}
		inserts := make([]pendingInsert, 0, len(batch))
		var bonuses map[incentiveKey]bonusTodo // bonus campaigns the batch's sales count toward
		for i := range batch {
			c := &batch[i]
			if c.Status != collections.ConversionApproved {
				continue
			}
			amount, kind, explanation, payableAt, err := ctx.compute(c)
			if err != nil {
				return err
			}
			if p := ctx.programs[c.Program]; p.bonusIncentives != nil {
				bonuses = ctx.bonusesOf(bonuses, p, c)
			}
			if amount <= 0 {
				st.Zero++
				continue
			}
			inserts = append(inserts, pendingInsert{c: c, kind: kind, amount: amount, payableAt: store.DBTime(payableAt), explanation: explanation})
		}
		slices.SortFunc(inserts, func(a, b pendingInsert) int { return cmp.Compare(a.c.ID, b.c.ID) })
		for _, in := range inserts {
			if err := w.add(in.c, in.kind, in.amount, in.payableAt, in.explanation); err != nil {
				return err
			}
		}
		if err := markCommissioned(sqlTx, batch); err != nil {
			return err
		}
		for k, todo := range bonuses {
			a, err := ctx.affiliate(k.affiliate)
			if err != nil {
				return err
			}
			if err := payIncentiveBonuses(tx, st, todo, a, now); err != nil {
				return fmt.Errorf("bonuses of incentive %s for %s: %w", k.incentive, k.affiliate, err)
			}
		}
		if err := queueBonusChecks(sqlTx, w.touched); err != nil {
			return err
		}
		if err := store.AddCommissionTotals(tx, w.totals); err != nil {
			return err
		}
		return store.AddStats(tx, w.stats)
	})
	if err != nil {
		return 0, err
	}
	if e.live != nil {
		for affiliate, amount := range live {
			e.live.add(affiliate, liveCounters{Commission: amount})
		}
	}
	return n, nil
}

// selectNewConversions reads up to commissionBatch conversions the engine has not handled, in
// the order of the partial index on them (no sort).
func selectNewConversions(tx *sql.Tx) ([]pendingConversion, error) {
	rows, err := tx.Query(`SELECT rowid, id, affiliate, program, link, amount, currency, status, occurred_at, created, subscription_id, payment_number
		FROM conversions WHERE commissioned = FALSE AND status IN ('approved', 'rejected', 'refunded') LIMIT ?`, commissionBatch)
	if err != nil {
		return nil, fmt.Errorf("select new conversions: %w", err)
	}
	defer rows.Close()
	batch := make([]pendingConversion, 0, 256)
	for rows.Next() {
		var c pendingConversion
		if err := rows.Scan(&c.rowid, &c.ID, &c.Affiliate, &c.Program, &c.Link, &c.Amount, &c.Currency, &c.Status,
			&c.OccurredAt, &c.Created, &c.SubscriptionID, &c.PaymentNumber); err != nil {
			return nil, fmt.Errorf("scan new conversion: %w", err)
		}
		batch = append(batch, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("select new conversions: %w", err)
	}
	return batch, nil
}

// commissionInsert adds one sale or recurring commission. One row per statement on purpose: a
// statement writing several rows needs a statement journal (every page it touches copied in
// case it must be rolled back alone), which costs more than the per-statement overhead saved.
const commissionInsert = `INSERT INTO commissions (id, affiliate, program, conversion, kind, amount, currency, status,
	payable_at, payout, rule, ref, note, created, updated) VALUES (?,?,?,?,?,?,?,?,?,'',?,'','',?,?)
	ON CONFLICT (conversion, kind) WHERE ` + saleIndexWhere + ` DO NOTHING`

// commissionWriter inserts a batch's commissions and accounts for the ones actually created
// (stats_daily, live counters, bonus months, engine stats).
type commissionWriter struct {
	tx      *sql.Tx
	events  *eventEmitter // commission.created, in the batch's transaction
	insert  *sql.Stmt     // prepared on first use
	stamp   string
	stats   map[store.StatsKey]store.StatsDelta
	totals  map[store.TotalsKey]store.TotalsDelta // sale and recurring commissions created (no trigger counts them)
	st      *engineStats
	live    map[string]int64
	touched map[monthKey]bool
}

func (w *commissionWriter) add(c *pendingConversion, kind string, amount int64, payableAt, rule string) error {
	if w.insert == nil {
		var err error
		if w.insert, err = w.tx.Prepare(commissionInsert); err != nil {
			return fmt.Errorf("prepare commission insert: %w", err)
		}
	}
	id := store.NewOrderedID(time.Now())
	res, err := w.insert.Exec(id, c.Affiliate, c.Program, c.ID, kind, amount, c.Currency,
		collections.CommissionPending, payableAt, rule, w.stamp, w.stamp)
	if err != nil {
		return fmt.Errorf("insert commission for %s: %w", c.ID, err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return nil // this sale already had its commission
	}
	if ok, err := w.events.wants(eventCommissionCreated); err != nil {
		return err
	} else if ok {
		data, err := engineCommissionData(id, c, kind, amount, payableAt, w.stamp)
		if err != nil {
			return err
		}
		if err := w.events.emit(eventCommissionCreated, data); err != nil {
			return err
		}
	}
	w.st.Created++
	w.live[c.Affiliate] += amount
	tk := store.TotalsKey{Program: c.Program, Currency: c.Currency, Status: collections.CommissionPending}
	w.totals[tk] = store.TotalsDelta{Amount: w.totals[tk].Amount + amount, Count: w.totals[tk].Count + 1}
	// occurred_at is stored as "2006-01-02 15:04:05.000Z" (UTC, checked by compute): its day
	// and month are prefixes.
	k := store.StatsKeyAt(c.OccurredAt, c.Affiliate, c.Program, c.Link)
	d := w.stats[k]
	d.Commission += amount
	w.stats[k] = d
	w.touched[monthKey{c.Affiliate, c.Program, c.OccurredAt[:7]}] = true
	return nil
}

// engineCommissionData is eventData of a commission the engine just inserted, built from the
// values it wrote: reading each row back as a record cost several times the insert
// (BenchmarkCommissionEngineWithWebhook). TestOutgoingWebhooks checks it equals eventData of the
// stored record.
func engineCommissionData(id string, c *pendingConversion, kind string, amount int64, payableAt, stamp string) (map[string]any, error) {
	date := func(s string) (string, error) {
		t, err := store.ParseDBTime(s)
		return t.UTC().Format(time.RFC3339Nano), err
	}
	payable, err := date(payableAt)
	if err != nil {
		return nil, fmt.Errorf("commission %s payable_at %q: %w", id, payableAt, err)
	}
	created, err := date(stamp)
	if err != nil {
		return nil, fmt.Errorf("commission %s created %q: %w", id, stamp, err)
	}
	return map[string]any{"id": id, "affiliate": c.Affiliate, "program": c.Program, "conversion": c.ID, "kind": kind, "amount": amount,
		"currency": c.Currency, "status": collections.CommissionPending, "payable_at": payable, "payout": "", "note": "",
		"created": created, "updated": created}, nil
}

func (w *commissionWriter) close() {
	if w.insert != nil {
		w.insert.Close()
	}
}

// saleIndexWhere is the condition of the unique (conversion, kind) index of sale and recurring
// commissions. Inserts name it as their conflict target, so only "this sale already has its
// commission" is skipped; any other conflict (an id collision) fails the batch loudly instead
// of silently dropping a commission.
const saleIndexWhere = "conversion != '' AND kind != 'clawback' AND kind != 'bonus' AND kind != 'adjustment'"

// markChunk is how many conversions one UPDATE marks handled.
const markChunk = 500

// markCommissioned flags the batch as handled, a chunk of rowids per statement (the batch was
// read in this transaction, so its rowids are those of the same rows).
func markCommissioned(tx *sql.Tx, batch []pendingConversion) error {
	var full *sql.Stmt
	defer func() {
		if full != nil {
			full.Close()
		}
	}()
	args := make([]any, 0, markChunk)
	for start := 0; start < len(batch); start += markChunk {
		part := batch[start:min(start+markChunk, len(batch))]
		args = args[:0]
		for i := range part {
			args = append(args, part[i].rowid)
		}
		q := "UPDATE conversions SET commissioned = TRUE WHERE rowid IN (?" + strings.Repeat(",?", len(part)-1) + ")"
		var err error
		if len(part) == markChunk {
			if full == nil {
				if full, err = tx.Prepare(q); err != nil {
					return fmt.Errorf("mark conversions handled: %w", err)
				}
			}
			_, err = full.Exec(args...)
		} else {
			_, err = tx.Exec(q, args...)
		}
		if err != nil {
			return fmt.Errorf("mark conversions handled: %w", err)
		}
	}
	return nil
}

// ruleContext caches the programs, affiliates, tiers and subscription starts one batch needs.
type ruleContext struct {
	tx         core.App
	programs   map[string]*programRules
	affiliates map[string]rules.Affiliate
	tiers      map[string][]rules.Tier
	subStarts  map[string]time.Time
	quoted     map[string]string // JSON encodings of the rule's strings
	buf        []byte
}

// programRules is what the engine reads of a program, converted once per batch.
type programRules struct {
	rules    rules.Program
	holdDays int
	tiers    []rules.Tier
	// incentives are the program's active rate boosts and multipliers, bonusIncentives its
	// per-sale and target bonuses (nil for most programs: then the engine does no more than
	// before).
	incentives, bonusIncentives []rules.Incentive
}

func newRuleContext(tx core.App) *ruleContext {
	return &ruleContext{tx: tx, programs: map[string]*programRules{}, affiliates: map[string]rules.Affiliate{},
		tiers: map[string][]rules.Tier{}, subStarts: map[string]time.Time{}, quoted: map[string]string{}}
}

// compute returns the commission of c, its kind, the JSON snapshot of why and its payable_at:
// the program's hold from when the sale was recorded (heldFrom), never from an earlier claimed
// occurred_at.
func (r *ruleContext) compute(c *pendingConversion) (int64, string, string, time.Time, error) {
	p, err := r.program(c.Program)
	if err != nil {
		return 0, "", "", time.Time{}, err
	}
	a, err := r.affiliate(c.Affiliate)
	if err != nil {
		return 0, "", "", time.Time{}, err
	}
	occurred, err := store.ParseDBTime(c.OccurredAt)
	if err != nil {
		return 0, "", "", time.Time{}, fmt.Errorf("conversion %s occurred_at %q: %w", c.ID, c.OccurredAt, err)
	}
	recorded, err := store.ParseDBTime(c.Created)
	if err != nil {
		return 0, "", "", time.Time{}, fmt.Errorf("conversion %s created %q: %w", c.ID, c.Created, err)
	}
	kind := collections.KindSale
	conv := rules.Conversion{Amount: c.Amount, Currency: c.Currency, Kind: rules.KindSale, OccurredAt: occurred, PaymentNumber: max(c.PaymentNumber, 1)}
	if c.PaymentNumber > 1 {
		kind, conv.Kind = collections.KindRecurring, rules.KindRecurring
		if conv.SubscriptionStart, err = r.subscriptionStart(c.SubscriptionID); err != nil {
			return 0, "", "", time.Time{}, err
		}
	}
	res, err := rules.Compute(conv, p.rules, a, p.tiers, rules.Performance{})
	if err != nil {
		return 0, "", "", time.Time{}, fmt.Errorf("commission of conversion %s: %w", c.ID, err)
	}
	if p.incentives != nil {
		// Campaigns running when the sale occurred, on top of whichever rate won.
		if rc := rules.RateChangeFor(p.incentives, a.ID, a.TierID, occurred); !rc.None() {
			if res, err = rules.ApplyIncentives(res, p.rules, rc); err != nil {
				return 0, "", "", time.Time{}, fmt.Errorf("incentives of conversion %s: %w", c.ID, err)
			}
		}
	}
	r.buf = r.appendRule(r.buf[:0], res.Rule, res.Amount)
	return res.Amount, kind, string(r.buf), heldFrom(recorded, occurred).AddDate(0, 0, p.holdDays), nil
}

// bonusesOf adds to m the bonus campaigns of p whose window holds c's sale.
func (r *ruleContext) bonusesOf(m map[incentiveKey]bonusTodo, p *programRules, c *pendingConversion) map[incentiveKey]bonusTodo {
	occurred, err := store.ParseDBTime(c.OccurredAt) // parsed by compute already: cannot fail here
	if err != nil {
		return m
	}
	for _, in := range p.bonusIncentives {
		if !in.Covers(occurred) {
			continue
		}
		if m == nil {
			m = map[incentiveKey]bonusTodo{}
		}
		m[incentiveKey{in.ID, c.Affiliate}] = bonusTodo{in: in, program: p, id: c.Program}
	}
	return m
}

// appendRule appends the JSON of commissionRule{e, amount}, byte for byte what json.Marshal
// writes (TestRuleSnapshotIsJSON), without reflection: the strings come from a handful of
// values (sources, types, tier names) and are encoded once per batch.
func (r *ruleContext) appendRule(b []byte, e rules.Explanation, amount int64) []byte {
	b = append(b, `{"source":`...)
	b = append(b, r.jsonString(e.Source)...)
	b = append(b, `,"type":`...)
	b = append(b, r.jsonString(e.Type)...)
	b = append(b, `,"value":`...)
	b = strconv.AppendInt(b, e.Value, 10)
	if e.TierID != "" {
		b = append(b, `,"tier_id":`...)
		b = append(b, r.jsonString(e.TierID)...)
	}
	if e.TierName != "" {
		b = append(b, `,"tier_name":`...)
		b = append(b, r.jsonString(e.TierName)...)
	}
	b = append(b, `,"base":`...)
	b = strconv.AppendInt(b, e.Base, 10)
	b = append(b, `,"recurring":`...)
	b = append(b, r.jsonString(e.Recurring)...)
	b = append(b, `,"payment":`...)
	b = strconv.AppendInt(b, int64(e.Payment), 10)
	if e.Note != "" {
		b = append(b, `,"note":`...)
		b = append(b, r.jsonString(e.Note)...)
	}
	if e.Boost != 0 {
		b = append(b, `,"boost":`...)
		b = strconv.AppendInt(b, e.Boost, 10)
	}
	if e.Multiplier != 0 {
		b = append(b, `,"multiplier":`...)
		b = strconv.AppendInt(b, e.Multiplier, 10)
	}
	if len(e.Incentives) > 0 {
		b = append(b, `,"incentives":`...)
		for i, in := range e.Incentives {
			if i == 0 {
				b = append(b, `[{"id":`...)
			} else {
				b = append(b, `,{"id":`...)
			}
			b = append(b, r.jsonString(in.ID)...)
			b = append(b, `,"name":`...)
			b = append(b, r.jsonString(in.Name)...)
			b = append(b, `,"kind":`...)
			b = append(b, r.jsonString(in.Kind)...)
			b = append(b, `,"value":`...)
			b = strconv.AppendInt(b, in.Value, 10)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = append(b, `,"amount":`...)
	b = strconv.AppendInt(b, amount, 10)
	return append(b, '}')
}

// jsonString is s encoded as a JSON string by encoding/json, cached.
func (r *ruleContext) jsonString(s string) string {
	if q, ok := r.quoted[s]; ok {
		return q
	}
	b, _ := json.Marshal(s) // a string always encodes
	r.quoted[s] = string(b)
	return string(b)
}

// commissionRule is the stored `rule`: the engine's explanation plus the amount it computed,
// which refunds scale from even after partial reductions.
type commissionRule struct {
	rules.Explanation
	Amount int64 `json:"amount"`
}

func (r *ruleContext) program(id string) (*programRules, error) {
	if p, ok := r.programs[id]; ok {
		return p, nil
	}
	rec, err := collections.FindProgram(r.tx, id)
	if err != nil {
		return nil, err
	}
	tiers, err := r.programTiers(id)
	if err != nil {
		return nil, err
	}
	p := &programRules{
		rules: rules.Program{
			CommissionType: rec.CommissionType(), CommissionValue: rec.CommissionValue(),
			Recurring: rec.GetString(collections.ProgramRecurring), RecurringMonths: rec.GetInt(collections.ProgramRecurringMonths),
			Currency: rec.Currency(),
		},
		holdDays: rec.HoldDays(),
		tiers:    tiers,
	}
	campaigns, err := programIncentives(r.tx, id, time.Time{})
	if err != nil {
		return nil, err
	}
	for _, rec := range campaigns {
		if in := incentiveOf(rec); in.ChangesRate() {
			p.incentives = append(p.incentives, in)
		} else {
			p.bonusIncentives = append(p.bonusIncentives, in)
		}
	}
	r.programs[id] = p
	return p, nil
}

// loadAffiliates reads the rate-deciding fields of the batch's affiliates in one query instead
// of one record load per affiliate (a batch of a large program touches thousands of them).
// Affiliates it does not find are left to affiliate(), which reports them.
func (r *ruleContext) loadAffiliates(tx *sql.Tx, batch []pendingConversion) error {
	seen := make(map[string]bool, 64)
	ids := make([]string, 0, 64)
	for i := range batch {
		if id := batch[i].Affiliate; !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	list, err := json.Marshal(ids)
	if err != nil {
		return err
	}
	rows, err := tx.Query(`SELECT id, IFNULL(tier, ''), IFNULL(CAST(commission_override AS INTEGER), 0) FROM affiliates
		WHERE id IN (SELECT value FROM json_each(?))`, string(list))
	if err != nil {
		return fmt.Errorf("load affiliates: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var a rules.Affiliate
		if err := rows.Scan(&a.ID, &a.TierID, &a.CommissionOverride); err != nil {
			return fmt.Errorf("load affiliates: %w", err)
		}
		r.affiliates[a.ID] = a
	}
	return rows.Err()
}

func (r *ruleContext) affiliate(id string) (rules.Affiliate, error) {
	if a, ok := r.affiliates[id]; ok {
		return a, nil
	}
	rec, err := collections.FindAffiliate(r.tx, id)
	if err != nil {
		return rules.Affiliate{}, err
	}
	a := rules.Affiliate{ID: id, TierID: rec.TierID(), CommissionOverride: rec.CommissionOverride()}
	r.affiliates[id] = a
	return a, nil
}

func (r *ruleContext) programTiers(program string) ([]rules.Tier, error) {
	if t, ok := r.tiers[program]; ok {
		return t, nil
	}
	records, err := r.tx.FindAllRecords(collections.Tiers, dbx.HashExp{collections.FieldProgram: program})
	if err != nil {
		return nil, err
	}
	tiers := make([]rules.Tier, len(records))
	for i, t := range records {
		tiers[i] = rules.Tier{ID: t.Id, Name: t.GetString(collections.FieldName), Rank: t.GetInt(collections.TierRank),
			MinRevenue: int64(t.GetInt(collections.TierMinRevenue)), MinConversions: t.GetInt(collections.TierMinConversions),
			CommissionValue: int64(t.GetInt(collections.TierCommissionValue))}
	}
	r.tiers[program] = tiers
	return tiers, nil
}

// subscriptionStart is the first payment of a subscription: recurring windows count from it.
func (r *ruleContext) subscriptionStart(subscription string) (time.Time, error) {
	if subscription == "" {
		return time.Time{}, nil
	}
	if t, ok := r.subStarts[subscription]; ok {
		return t, nil
	}
	var first string
	err := r.tx.DB().NewQuery("SELECT MIN(occurred_at) FROM conversions WHERE subscription_id = {:s}").
		Bind(dbx.Params{"s": subscription}).Row(&first)
	if err != nil {
		return time.Time{}, fmt.Errorf("subscription %s start: %w", subscription, err)
	}
	t, err := store.ParseDBTime(first)
	if err != nil {
		return time.Time{}, fmt.Errorf("subscription %s start %q: %w", subscription, first, err)
	}
	r.subStarts[subscription] = t
	return t, nil
}

// refundTodo is a conversion whose refunds are not yet reflected in commissions.
type refundTodo struct {
	ID            string `db:"id"`
	Affiliate     string `db:"affiliate"`
	Program       string `db:"program"`
	Link          string `db:"link"`
	OccurredAt    string `db:"occurred_at"`
	Amount        int64  `db:"amount"`
	Refunded      int64  `db:"refunded_amount"`
	RefundApplied int64  `db:"refund_applied"`
	Commissioned  bool   `db:"commissioned"`
	Status        string `db:"status"`
}

// applyRefunds scales each refund onto the sale's commission: unpaid commissions are reduced
// (voided when nothing is left), paid ones get a negative clawback netted against the next
// payout. The reversal is computed from the cumulative refund, so replays converge.
func (e *commissionEngine) applyRefunds(st *engineStats) error {
	var todo []refundTodo
	err := e.app.DB().NewQuery(`SELECT id, affiliate, program, link, occurred_at, amount, refunded_amount, refund_applied, commissioned, status FROM conversions
		WHERE refunded_amount > refund_applied LIMIT 500`).All(&todo)
	if err != nil {
		return wrap(err, "select refunds")
	}
	if e.refundsListed != nil {
		e.refundsListed()
	}
	for _, listed := range todo {
		if !listed.Commissioned {
			continue // the next createBatch handles the sale first
		}
		var change int64 // of the sale's net commission
		var t refundTodo // the sale as it is inside the transaction
		applied := false
		err := e.app.RunInTransaction(func(tx core.App) error {
			change, applied = 0, false
			// Read again under the write lock: between the list and this transaction an edit
			// may have rejected the sale (taking its whole revenue out of stats_daily) or
			// refunded more. Deltas from the listed row would count those twice.
			if err := tx.DB().NewQuery(`SELECT id, affiliate, program, link, occurred_at, amount, refunded_amount, refund_applied,
				commissioned, status FROM conversions WHERE id = {:id}`).Bind(dbx.Params{"id": listed.ID}).One(&t); err != nil {
				return fmt.Errorf("read conversion %s: %w", listed.ID, err)
			}
			if !t.Commissioned || t.Refunded <= t.RefundApplied {
				return nil
			}
			applied = true
			if t.Status != collections.ConversionRejected {
				// A rejected sale's commission is already fully reversed; approving it again
				// reinstates it net of the refunds applied meanwhile (reinstateSale).
				c, err := reverseForRefund(tx, t, e.now().UTC())
				if err != nil {
					return err
				}
				change = c
			}
			occurred, err := store.ParseDBTime(t.OccurredAt)
			if err != nil {
				return fmt.Errorf("conversion %s occurred_at %q: %w", t.ID, t.OccurredAt, err)
			}
			// The sale's revenue counted in stats_daily when it was recorded (rejected sales
			// never were) shrinks by what was refunded since.
			d := store.StatsDelta{Commission: change}
			if t.Status != collections.ConversionRejected {
				d.Revenue = -(t.Refunded - t.RefundApplied)
			}
			k := store.StatsKeyOf(occurred, t.Affiliate, t.Program, t.Link)
			if err := store.AddStats(tx, map[store.StatsKey]store.StatsDelta{k: d}); err != nil {
				return fmt.Errorf("stats of the refund of %s: %w", t.ID, err)
			}
			_, err = tx.DB().NewQuery("UPDATE conversions SET refund_applied = {:r} WHERE id = {:id}").
				Bind(dbx.Params{"r": t.Refunded, "id": t.ID}).Execute()
			if err != nil {
				return err
			}
			return recordSaleEvent(tx, saleEvent{Conversion: t.ID, Affiliate: t.Affiliate, Program: t.Program,
				Change: saleChange{Door: collections.DoorEngine, Note: fmt.Sprintf("refund applied to the commission: %d of %d refunded, %d before",
					t.Refunded, t.Amount, t.RefundApplied)},
				StatusBefore: t.Status, StatusAfter: t.Status, RefundedBefore: t.Refunded, RefundedAfter: t.Refunded, Commission: change})
		})
		if err != nil {
			return fmt.Errorf("apply refund of %s: %w", listed.ID, err)
		}
		if !applied {
			continue
		}
		st.Refunds++
		if e.live != nil {
			d := liveCounters{Commission: change}
			if t.Status != collections.ConversionRejected {
				d.Revenue = -(t.Refunded - t.RefundApplied)
			}
			e.live.add(t.Affiliate, d)
		}
	}
	return nil
}

// reverseForRefund reflects t's new refunds in its sale's commission and returns by how much
// that changed the sale's net commission (zero or negative), for stats_daily.
func reverseForRefund(tx core.App, t refundTodo, now time.Time) (int64, error) {
	comm, err := saleCommission(tx, t.ID)
	if err != nil || comm == nil {
		return 0, err // nil: the sale earned nothing
	}
	original := saleOriginal(comm)
	delta := rules.Clawback(original, t.Amount, t.Refunded) - rules.Clawback(original, t.Amount, t.RefundApplied)
	if delta <= 0 {
		return 0, nil
	}
	switch comm.GetString(collections.FieldStatus) {
	case collections.CommissionVoid:
		return 0, nil
	case collections.CommissionPending, collections.CommissionPayable:
		if comm.GetString(collections.CommissionPayout) == "" {
			amount := int64(comm.GetInt(collections.FieldAmount))
			change := -delta
			if left := amount - delta; left <= 0 {
				comm.Set(collections.FieldStatus, collections.CommissionVoid)
				change = -amount
			} else {
				comm.Set(collections.FieldAmount, left)
			}
			return change, tx.Save(comm)
		}
	}
	// Paid (or already in a payout): claw back from the next payout.
	col, err := tx.FindCachedCollectionByNameOrId(collections.Commissions)
	if err != nil {
		return 0, err
	}
	claw := core.NewRecord(col)
	claw.Load(map[string]any{
		collections.FieldAffiliate:       comm.GetString(collections.FieldAffiliate),
		collections.FieldProgram:         comm.GetString(collections.FieldProgram),
		collections.CommissionConversion: t.ID,
		collections.CommissionKind:       collections.KindClawback,
		collections.FieldAmount:          -delta,
		collections.FieldCurrency:        comm.GetString(collections.FieldCurrency),
		collections.FieldStatus:          collections.CommissionPayable,
		collections.CommissionPayableAt:  now,
		collections.CommissionRule:       map[string]any{"refunded": t.Refunded, "of": t.Amount, "commission": original},
		"ref":                            fmt.Sprintf("refund:%s:%d", t.ID, t.Refunded),
		"note":                           "refund after payout",
	})
	return -delta, tx.Save(claw)
}

// releasePayable moves commissions whose hold has ended to payable, except those of a sale
// that is not (or no longer) approved: a disputed sale's commission waits. Each released
// commission's commission.payable event is written in the same transaction.
func (e *commissionEngine) releasePayable() (int, error) {
	var ids []string
	err := e.app.RunInTransaction(func(tx core.App) error {
		ids = ids[:0]
		err := tx.DB().NewQuery(`UPDATE commissions SET status = 'payable', updated = {:now}
			WHERE status = 'pending' AND payable_at <= {:now}
			AND (conversion = '' OR EXISTS (SELECT 1 FROM conversions v WHERE v.id = commissions.conversion AND v.status = 'approved'))
			RETURNING id`).
			Bind(dbx.Params{"now": store.DBTime(e.now())}).Column(&ids)
		if err != nil {
			return err
		}
		events := newEventEmitter(tx)
		for _, id := range ids {
			if err := events.emitRecord(eventCommissionPayable, collections.Commissions, id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("release payable commissions: %w", err)
	}
	return len(ids), nil
}

// queueBonusChecks records, in the batch's transaction, the affiliate months the batch added
// commissions to whose program has an active monthly bonus: evaluateBonuses pays them after
// the commit and deletes the rows, so a crash in between leaves the months to the next pass.
func queueBonusChecks(tx *sql.Tx, touched map[monthKey]bool) error {
	if len(touched) == 0 {
		return nil
	}
	rows, err := tx.Query(`SELECT DISTINCT program FROM ` + collections.Bonuses + ` WHERE active = TRUE`)
	if err != nil {
		return fmt.Errorf("programs with bonuses: %w", err)
	}
	withBonus := map[string]bool{}
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			rows.Close()
			return fmt.Errorf("programs with bonuses: %w", err)
		}
		withBonus[p] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("programs with bonuses: %w", err)
	}
	for k := range touched {
		if !withBonus[k.program] {
			continue
		}
		_, err := tx.Exec(`INSERT INTO `+collections.BonusChecks+` (affiliate, program, month) VALUES (?, ?, ?)
			ON CONFLICT (affiliate, program, month) DO NOTHING`, k.affiliate, k.program, k.month)
		if err != nil {
			return fmt.Errorf("queue bonus check of %s %s: %w", k.affiliate, k.month, err)
		}
	}
	return nil
}

// bonusCheck is one row of bonus_checks.
type bonusCheck struct {
	Affiliate string `db:"affiliate"`
	Program   string `db:"program"`
	Month     string `db:"month"`
}

// evaluateBonuses pays each active milestone bonus once per affiliate and calendar month, for
// the months queued in bonus_checks (by this pass's batches, or by a pass that crashed before
// it got here), and deletes each month's row once its bonuses are paid. A bonus is paid once
// per month however often a month is evaluated (its ref is unique).
func (e *commissionEngine) evaluateBonuses(st *engineStats) error {
	var checks []bonusCheck
	if err := e.app.DB().Select("affiliate", "program", "month").From(collections.BonusChecks).
		OrderBy("month", "program", "affiliate").All(&checks); err != nil {
		return fmt.Errorf("bonus checks: %w", err)
	}
	// Active bonuses are read once per program: a large run touches thousands of months.
	byProgram := map[string][]*core.Record{}
	for _, k := range checks {
		bonuses, ok := byProgram[k.Program]
		if !ok {
			var err error
			if bonuses, err = e.app.FindAllRecords(collections.Bonuses, dbx.HashExp{collections.FieldProgram: k.Program, "active": true}); err != nil {
				e.app.Logger().Warn("bonus evaluation: read bonuses; the next pass retries", "program", k.Program, "error", err)
				continue // the row stays
			}
			byProgram[k.Program] = bonuses
		}
		if err := e.evaluateBonusMonth(st, k, bonuses); err != nil {
			return err
		}
		done := dbx.HashExp{"affiliate": k.Affiliate, "program": k.Program, "month": k.Month}
		if _, err := e.app.DB().Delete(collections.BonusChecks, done).Execute(); err != nil {
			return fmt.Errorf("bonus check of %s %s done: %w", k.Affiliate, k.Month, err)
		}
	}
	return nil
}

// evaluateBonusMonth pays the bonuses of k's month that its approved sales reached.
func (e *commissionEngine) evaluateBonusMonth(st *engineStats, k bonusCheck, bonuses []*core.Record) error {
	if len(bonuses) == 0 {
		return nil
	}
	start, err := time.Parse("2006-01", k.Month)
	if err != nil {
		return fmt.Errorf("bonus check of %s: month %q: %w", k.Affiliate, k.Month, err)
	}
	end := start.AddDate(0, 1, 0)
	var perf struct {
		N       int   `db:"n"`
		Revenue int64 `db:"revenue"`
	}
	err = e.app.DB().NewQuery(`SELECT COUNT(*) AS n, IFNULL(SUM(amount - refunded_amount), 0) AS revenue FROM conversions
		WHERE affiliate = {:a} AND program = {:p} AND status = 'approved' AND occurred_at >= {:from} AND occurred_at < {:to}`).
		Bind(dbx.Params{"a": k.Affiliate, "p": k.Program, "from": store.DBTime(start), "to": store.DBTime(end)}).One(&perf)
	if err != nil {
		return fmt.Errorf("bonus performance: %w", err)
	}
	program, err := collections.FindProgram(e.app, k.Program)
	if err != nil {
		return err
	}
	for _, b := range bonuses {
		if perf.N < b.GetInt("min_conversions") || perf.Revenue < int64(b.GetInt("min_revenue")) {
			continue
		}
		// The bonus and its count in commission_totals in one transaction.
		err := insertBonus(e.app, st, bonusRow{affiliate: k.Affiliate, program: k.Program, currency: program.Currency(),
			amount: int64(b.GetInt("amount")), now: e.now(),
			payableAt: heldFrom(e.now(), end).AddDate(0, 0, program.HoldDays()), // a past month's: from now
			rule:      fmt.Sprintf(`{"bonus":%q,"month":%q,"conversions":%d,"revenue":%d}`, b.Id, k.Month, perf.N, perf.Revenue),
			ref:       "bonus:" + b.Id + ":" + k.Month, note: b.GetString(collections.FieldName)})
		if err != nil {
			return err
		}
	}
	return nil
}

// commissionOwnedFields never change after a commission is created: they say whose money it
// is, for which sale, and in what currency.
var commissionOwnedFields = [...]string{collections.FieldAffiliate, collections.FieldProgram,
	collections.CommissionConversion, collections.CommissionKind, collections.FieldCurrency}

// guardCommissionEdit refuses a save of a commission (an admin's in the dashboard, or any code's)
// that would unbalance the ledger. It compares with the stored row, not with the record as it was
// loaded, so a dashboard form opened before a payout run cannot undo the run: its stale payout
// and status count as changes and are refused.
//   - Owner, sale, kind and currency never change.
//   - A commission joins, leaves and is paid by a payout only through the payout (the run and
//     the payout's status changes write payout and status directly).
//   - A commission in a payout, or paid, keeps its status and amount: a refund or rejection
//     claws it back instead.
//
// Unpaid commissions outside payouts may change status (pending, payable, void) and amount.
func guardCommissionEdit(stored, r *core.Record) error {
	for _, f := range commissionOwnedFields {
		if fmt.Sprint(stored.Get(f)) != fmt.Sprint(r.Get(f)) {
			return fieldError(f, "immutable", "A commission's affiliate, program, sale, kind and currency are fixed when it is created.")
		}
	}
	if stored.GetString(collections.CommissionPayout) != r.GetString(collections.CommissionPayout) {
		return fieldError(collections.CommissionPayout, "payout_owned",
			"Commissions join and leave payouts through payout runs and the payout's status (reload: it may have changed).")
	}
	from, to := stored.GetString(collections.FieldStatus), r.GetString(collections.FieldStatus)
	if stored.GetString(collections.CommissionPayout) != "" || from == collections.CommissionPaid {
		if from != to {
			return fieldError(collections.FieldStatus, "in_payout",
				"This commission is in a payout: its status follows the payout's (reload: it may have changed).")
		}
		if stored.GetInt(collections.FieldAmount) != r.GetInt(collections.FieldAmount) {
			return fieldError(collections.FieldAmount, "in_payout",
				"This commission is in a payout: its amount is fixed; add an adjustment or clawback instead.")
		}
		return nil
	}
	if to == collections.CommissionPaid {
		return fieldError(collections.FieldStatus, "payout_owned", "A commission is paid by marking its payout paid.")
	}
	return nil
}

// previousMonth is the calendar month before t ("2026-10" on any day of November 2026).
func previousMonth(t time.Time) string {
	y, m, _ := t.UTC().Date()
	return time.Date(y, m-1, 1, 0, 0, 0, 0, time.UTC).Format("2006-01")
}

func wrap(err error, what string) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}

// registerCommissionRecords validates commissions written by admins: adjustments need a note,
// every commission is in its program's currency, amounts have the sign of their kind, and an
// edit cannot unbalance the ledger (guardCommissionEdit).
func registerCommissionRecords(app core.App) {
	app.OnRecordUpdate(collections.Commissions).BindFunc(func(e *core.RecordEvent) error {
		stored, err := e.App.FindRecordById(collections.Commissions, e.Record.Id)
		if err != nil {
			return fmt.Errorf("read commission %s: %w", e.Record.Id, err)
		}
		if err := guardCommissionEdit(stored, e.Record); err != nil {
			return err
		}
		return e.Next()
	})
	app.OnRecordCreate(collections.Commissions).BindFunc(func(e *core.RecordEvent) error {
		r := e.Record
		if r.GetString(collections.FieldCurrency) == "" {
			if p, err := collections.FindProgram(e.App, r.GetString(collections.FieldProgram)); err == nil {
				r.Set(collections.FieldCurrency, p.Currency())
			}
		}
		if r.GetString(collections.CommissionKind) == collections.KindAdjustment {
			if r.GetString(collections.FieldStatus) == "" {
				r.Set(collections.FieldStatus, collections.CommissionPayable)
			}
			if r.GetDateTime(collections.CommissionPayableAt).IsZero() {
				r.Set(collections.CommissionPayableAt, time.Now().UTC())
			}
		}
		// No trigger counts insertions in commission_totals (store.AddCommissionTotals): the
		// record and its count go in one transaction.
		return e.App.RunInTransaction(func(tx core.App) error {
			e.App = tx
			if err := e.Next(); err != nil {
				return err
			}
			return store.AddCommissionTotals(tx, map[store.TotalsKey]store.TotalsDelta{{Program: r.GetString(collections.FieldProgram),
				Currency: r.GetString(collections.FieldCurrency), Status: r.GetString(collections.FieldStatus)}: {Amount: int64(r.GetInt(collections.FieldAmount)), Count: 1}})
		})
	})
	app.OnRecordValidate(collections.Commissions).BindFunc(func(e *core.RecordEvent) error {
		r := e.Record
		kind, amount := r.GetString(collections.CommissionKind), r.GetInt(collections.FieldAmount)
		switch {
		case kind == collections.KindAdjustment && strings.TrimSpace(r.GetString("note")) == "":
			return fieldError("note", "required", "An adjustment needs a reason.")
		case kind == collections.KindAdjustment && amount == 0:
			return fieldError(collections.FieldAmount, "required", "An adjustment moves a non-zero amount.")
		case kind == collections.KindClawback && amount >= 0:
			return fieldError(collections.FieldAmount, "sign", "A clawback is negative.")
		case (kind == collections.KindSale || kind == collections.KindRecurring || kind == collections.KindBonus) && amount <= 0:
			return fieldError(collections.FieldAmount, "sign", "A commission is positive.")
		}
		if p, err := collections.FindProgram(e.App, r.GetString(collections.FieldProgram)); err == nil && p.Currency() != r.GetString(collections.FieldCurrency) {
			return fieldError(collections.FieldCurrency, "currency_mismatch", "Commissions are in the program's currency ("+p.Currency()+").")
		}
		if a, err := collections.FindAffiliate(e.App, r.GetString(collections.FieldAffiliate)); err != nil || a.ProgramID() != r.GetString(collections.FieldProgram) {
			return fieldError(collections.FieldAffiliate, "program_mismatch", "The affiliate must belong to the commission's program.")
		}
		return e.Next()
	})
}
