package hooks

import (
	"cmp"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"
	"github.com/spf13/cobra"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/codes"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/importfile"
)

// importBatch is how many affiliates one import transaction writes: every step is idempotent,
// so a crash between batches is finished by running the import again, and the server's
// writers (clicks wait for the one write connection) never wait for a whole file.
const importBatch = 100

// importOptions are the command's flags.
type importOptions struct {
	Platform string
	Program  string // id or slug; "" is the default program
	DryRun   bool
	Balances bool // import the balance column as opening-balance adjustments
	Notify   bool // send the lifecycle mail (approved / application received) to created affiliates
}

// importSummary is what an import did (or, in a dry run, would do).
type importSummary struct {
	Created, Updated, Skipped   int
	Coupons, Aliases, Balances  int
	BalancesIgnored             int // balance cells of a run without --balances
	Problems                    []importfile.Problem
	DryRun                      bool
	Platform, Program, Currency string
}

// importPlan is one row checked against the database: the affiliate it is (existing or to
// create) and what the import still has to add for it.
type importPlan struct {
	row      importfile.Row
	existing *core.Record // nil: created by the import
	code     string       // a new affiliate's code: its legacy code when that is one of ours, else "" (generated)
	tierID   string
	aliases  []string // legacy codes without their alias row yet
	coupon   bool     // the row's coupon is to be created
	balance  bool     // an opening balance is to be created
}

// importer runs one import into one program.
type importer struct {
	app     core.App
	opts    importOptions
	program *collections.Program
	now     func() time.Time
}

// commandFailedKey marks, in the app's store, a command that failed: PocketBase's Execute
// drops the root command's error, so main asks CommandFailed for the exit status.
const commandFailedKey = "pba.commandFailed"

// CommandFailed reports whether a pbaffiliate command run on app failed (main exits 1).
func CommandFailed(app core.App) bool {
	failed, _ := app.Store().Get(commandFailedKey).(bool)
	return failed
}

// Failing wraps a command's RunE so that its error marks the command failed on app: every
// command that runs inside PocketBase's root command exits non-zero when it fails (main wraps
// PocketBase's own serve with it).
func Failing(app core.App, run func(*cobra.Command, []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		err := run(cmd, args)
		if err != nil {
			app.Store().Set(commandFailedKey, true)
		}
		return err
	}
}

// NewImportCommand is `pbaffiliate import` on app (Register adds it to the root command;
// tests run it against their own app).
func NewImportCommand(app core.App) *cobra.Command {
	var opts importOptions
	cmd := &cobra.Command{
		Use:   "import --from rewardful|firstpromoter|tapfiliate|csv [--dry-run] [--program SLUG] [--balances] [--notify] FILE",
		Short: "Import affiliates, their legacy codes, coupons and opening balances from another platform's CSV export",
		Long: `Import affiliates from another platform's affiliate export (or pbaffiliate's own CSV:
name,email,code,payout_email,status plus optional coupon,tier,balance,currency).

Every row is checked first; any problem (with its line and field) stops the import before it
writes anything. Running it again is safe: affiliates are matched by email, then by a legacy
code an earlier import of the same platform brought; existing affiliates keep their profile
and only gain the missing legacy codes, coupon and opening balance. Legacy codes keep old links
working (?via=, ?ref=, ?fpr=, ?fp_ref=, ?tap_a=, ?aff= on the merchant's pages through
track.js, and /r/CODE or /r/?via=CODE). Imported affiliates get no password they know: they
set one with the portal's "Forgot password". No mail is sent unless --notify.`,
		Args:         cobra.ExactArgs(1),
		SilenceUsage: true,
		RunE: Failing(app, func(cmd *cobra.Command, args []string) error {
			if err := app.RunAllMigrations(); err != nil {
				return fmt.Errorf("migrate: %w", err)
			}
			f, err := os.Open(args[0])
			if err != nil {
				return fmt.Errorf("import: %w", err)
			}
			defer f.Close()
			sum, err := runImport(app, opts, f, time.Now)
			printImport(cmd.OutOrStdout(), sum)
			if err != nil {
				return err
			}
			if len(sum.Problems) > 0 {
				return fmt.Errorf("import: %d problems in %s; nothing was imported", len(sum.Problems), args[0])
			}
			return nil
		}),
	}
	cmd.Flags().StringVar(&opts.Platform, "from", "", "the platform the file comes from: "+strings.Join(importfile.Platforms, ", "))
	cmd.Flags().StringVar(&opts.Program, "program", "", "the program to import into (slug or id; default: the default program)")
	cmd.Flags().BoolVar(&opts.DryRun, "dry-run", false, "check every row and show what would be imported; write nothing")
	cmd.Flags().BoolVar(&opts.Balances, "balances", false, "import the balance column as opening-balance adjustments (payable, once per affiliate and platform)")
	cmd.Flags().BoolVar(&opts.Notify, "notify", false, "send created affiliates the approved / application received mail (default: none)")
	_ = cmd.MarkFlagRequired("from")
	return cmd
}

// runImport checks the file and, unless it has problems or this is a dry run, imports it.
// Problems are in the summary; the error is for what stopped the import otherwise.
func runImport(app core.App, opts importOptions, file io.Reader, now func() time.Time) (importSummary, error) {
	sum := importSummary{DryRun: opts.DryRun, Platform: opts.Platform}
	if !importfile.Known(opts.Platform) {
		return sum, fmt.Errorf("import: --from must be one of %s", strings.Join(importfile.Platforms, ", "))
	}
	program, err := findImportProgram(app, opts.Program)
	if err != nil {
		return sum, err
	}
	sum.Program, sum.Currency = program.Slug(), program.Currency()
	rows, problems, err := importfile.Parse(file, opts.Platform, program.Currency())
	if err != nil {
		return sum, fmt.Errorf("import: %w", err)
	}
	im := &importer{app: app, opts: opts, program: program, now: now}
	plans, dbProblems, err := im.plan(rows)
	if err != nil {
		return sum, err
	}
	sum.Problems = sortProblems(append(problems, dbProblems...))
	if len(sum.Problems) > 0 {
		return sum, nil
	}
	if opts.DryRun {
		for _, p := range plans {
			sum.count(p, opts.Balances)
		}
		return sum, nil
	}
	return sum, im.write(plans, &sum)
}

func findImportProgram(app core.App, idOrSlug string) (*collections.Program, error) {
	if idOrSlug == "" {
		p, err := collections.FindDefaultProgram(app)
		if err != nil {
			return nil, fmt.Errorf("import: %w", err)
		}
		return p, nil
	}
	r, err := app.FindFirstRecordByFilter(collections.Programs, "id = {:p} || slug = {:p}", dbx.Params{"p": idOrSlug})
	if err != nil {
		return nil, fmt.Errorf("import: no program %q", idOrSlug)
	}
	return collections.AsProgram(r)
}

// plan checks each row against the database and decides what importing it means. Nothing is
// written; a dry run stops here.
func (im *importer) plan(rows []importfile.Row) ([]importPlan, []importfile.Problem, error) {
	var problems []importfile.Problem
	bad := func(line int, field, code, msg string) {
		problems = append(problems, importfile.Problem{Line: line, Field: field, Code: code, Message: msg})
	}
	tiers, err := im.tiersByName()
	if err != nil {
		return nil, nil, err
	}
	plans := make([]importPlan, 0, len(rows))
	for _, row := range rows {
		if row.Email == "" {
			continue // already reported by the file's own checks
		}
		p := importPlan{row: row}
		existing, err := im.match(row)
		if err != nil {
			return nil, nil, err
		}
		p.existing = existing
		self := ""
		if existing != nil {
			self = existing.Id
			if existing.GetString(collections.FieldProgram) != im.program.Id {
				bad(row.Line, "email", "other_program", fmt.Sprintf("%s is an affiliate of another program.", row.Email))
				continue
			}
		}
		for _, c := range row.Codes() {
			owner, err := codeOwner(im.app, c)
			if err != nil {
				return nil, nil, err
			}
			if existing == nil && c == row.Code && codes.Valid(c) && owner.affiliate == "" && !owner.link {
				p.code = c // kept: old links and new ones look the same
			}
			switch {
			case owner.link:
				bad(row.Line, "code", "code_taken", fmt.Sprintf("%q is the code of a link here; old links would credit that link.", c))
			case owner.affiliate != "" && owner.affiliate != self:
				bad(row.Line, "code", "code_taken", fmt.Sprintf("%q is already the code of another affiliate here (%s).", c, owner.email))
			case !owner.alias:
				p.aliases = append(p.aliases, c)
			}
		}
		if row.Tier != "" {
			id, ok := tiers[strings.ToLower(row.Tier)]
			if !ok {
				bad(row.Line, "tier", "unknown_tier", fmt.Sprintf("The program has no tier %q.", row.Tier))
			}
			p.tierID = id
		}
		if row.Coupon != "" {
			owner, err := im.couponOwner(row.Coupon)
			if err != nil {
				return nil, nil, err
			}
			switch {
			case owner == "":
				p.coupon = true
			case owner != self:
				bad(row.Line, "coupon", "coupon_taken", fmt.Sprintf("Coupon %q belongs to another affiliate of the program.", row.Coupon))
			}
		}
		if row.HasBalance {
			if cur := row.Currency; cur != "" && cur != im.program.Currency() {
				bad(row.Line, "currency", "currency_mismatch", fmt.Sprintf("The program pays in %s; a balance in %s cannot be imported.",
					strings.ToUpper(im.program.Currency()), strings.ToUpper(cur)))
			}
			if row.Balance != 0 {
				has, err := im.hasOpeningBalance(self)
				if err != nil {
					return nil, nil, err
				}
				p.balance = !has
			}
		}
		plans = append(plans, p)
	}
	return plans, problems, nil
}

// match finds the affiliate a row is: by email, else by a legacy code an earlier import of
// the same platform recorded (the affiliate changed its email on the old platform since).
// A code of another platform or of our own affiliates never matches: it is someone else.
func (im *importer) match(row importfile.Row) (*core.Record, error) {
	r, err := im.app.FindAuthRecordByEmail(collections.Affiliates, row.Email)
	if err == nil {
		return r, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("import: find %s: %w", row.Email, err)
	}
	for _, c := range row.Codes() {
		alias, err := im.app.FindFirstRecordByFilter(collections.CodeAliases, "code = {:c} && source = {:s}",
			dbx.Params{"c": c, "s": im.opts.Platform})
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("import: find code %q: %w", c, err)
		}
		return im.app.FindRecordById(collections.Affiliates, alias.GetString(collections.FieldAffiliate))
	}
	return nil, nil
}

// codeUse is who answers a code at /r/{code} today.
type codeUse struct {
	link      bool
	affiliate string // the affiliate whose code or alias it is
	email     string
	alias     bool // an alias row exists (of affiliate)
}

func codeOwner(app core.App, code string) (codeUse, error) {
	var u codeUse
	var row struct {
		ID    string `db:"id"`
		Email string `db:"email"`
	}
	err := app.DB().NewQuery("SELECT id, email FROM affiliates WHERE code = {:c} LIMIT 1").Bind(dbx.Params{"c": code}).One(&row)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return u, fmt.Errorf("import: code %q: %w", code, err)
	}
	u.affiliate, u.email = row.ID, row.Email
	var n int
	if err := app.DB().NewQuery("SELECT count(*) FROM links WHERE code = {:c}").Bind(dbx.Params{"c": code}).Row(&n); err != nil {
		return u, fmt.Errorf("import: code %q: %w", code, err)
	}
	u.link = n > 0
	row.ID, row.Email = "", ""
	err = app.DB().NewQuery(`SELECT a.id AS id, a.email AS email FROM code_aliases x JOIN affiliates a ON a.id = x.affiliate
		WHERE x.code = {:c} LIMIT 1`).Bind(dbx.Params{"c": code}).One(&row)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return u, fmt.Errorf("import: alias %q: %w", code, err)
	}
	if row.ID != "" {
		u.alias = true
		if u.affiliate == "" {
			u.affiliate, u.email = row.ID, row.Email
		}
	}
	return u, nil
}

func (im *importer) tiersByName() (map[string]string, error) {
	recs, err := im.app.FindAllRecords(collections.Tiers, dbx.HashExp{collections.FieldProgram: im.program.Id})
	if err != nil {
		return nil, fmt.Errorf("import: tiers: %w", err)
	}
	m := make(map[string]string, len(recs))
	for _, t := range recs {
		m[strings.ToLower(t.GetString(collections.FieldName))] = t.Id
	}
	return m, nil
}

// couponOwner is the affiliate whose coupon code is in the program, "" when none.
func (im *importer) couponOwner(code string) (string, error) {
	var owner string
	err := im.app.DB().NewQuery("SELECT affiliate FROM coupons WHERE program = {:p} AND code = {:c} LIMIT 1").
		Bind(dbx.Params{"p": im.program.Id, "c": code}).Row(&owner)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("import: coupon %q: %w", code, err)
	}
	return owner, nil
}

// hasOpeningBalance reports whether an import of this platform already gave the affiliate its
// opening balance (whatever email the file had then): it is imported once per affiliate and
// platform.
func (im *importer) hasOpeningBalance(affiliateID string) (bool, error) {
	if affiliateID == "" {
		return false, nil
	}
	var n int
	err := im.app.DB().NewQuery("SELECT count(*) FROM commissions WHERE affiliate = {:a} AND kind = 'adjustment' AND ref LIKE {:prefix}").
		Bind(dbx.Params{"a": affiliateID, "prefix": importRef(im.opts.Platform, "") + "%"}).Row(&n)
	if err != nil {
		return false, fmt.Errorf("import: opening balance: %w", err)
	}
	return n > 0, nil
}

// importRef is the ref of an opening balance: import:<platform>:<email>.
func importRef(platform, email string) string {
	return collections.ImportRefPrefix + platform + ":" + email
}

// write imports the plans in batches. New affiliates whose legacy code is kept go first, so a
// code generated for another row can never take it.
func (im *importer) write(plans []importPlan, sum *importSummary) error {
	ordered := make([]importPlan, 0, len(plans))
	for _, kept := range []bool{true, false} {
		for _, p := range plans {
			if (p.code != "") == kept {
				ordered = append(ordered, p)
			}
		}
	}
	affiliates, err := im.app.FindCollectionByNameOrId(collections.Affiliates)
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	for start := 0; start < len(ordered); start += importBatch {
		batch := ordered[start:min(start+importBatch, len(ordered))]
		// Passwords are hashed before the transaction: bcrypt takes tens of milliseconds
		// each, and the transaction holds the one write connection the server's clicks need.
		fresh := make([]*core.Record, len(batch))
		for i, p := range batch {
			if p.existing == nil {
				fresh[i] = im.newAffiliate(affiliates, p)
			}
		}
		var done importSummary
		err := im.app.RunInTransaction(func(tx core.App) error {
			done = importSummary{}
			for i, p := range batch {
				if err := im.writeOne(tx, p, fresh[i], &done); err != nil {
					return fmt.Errorf("import: line %d (%s): %w", p.row.Line, p.row.Email, err)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		sum.add(done)
	}
	return nil
}

func (im *importer) newAffiliate(affiliates *core.Collection, p importPlan) *core.Record {
	r := core.NewRecord(affiliates)
	r.Set(collections.FieldName, p.row.Name)
	r.SetEmail(p.row.Email)
	// The admin vouches for the address (as when creating one in the dashboard), so mail
	// carries the affiliate's code and link; the password is random and never shown: the
	// affiliate sets one through the portal's password reset.
	r.SetVerified(true)
	r.SetRandomPassword()
	r.Set(collections.FieldProgram, im.program.Id)
	r.Set(collections.FieldStatus, p.row.Status)
	r.Set(collections.FieldCode, p.code) // "": generated from the name by the create hook
	r.Set(collections.AffiliatePayoutEmail, p.row.PayoutEmail)
	r.Set(collections.AffiliateTier, p.tierID)
	return r
}

// writeOne imports one row inside the batch's transaction. Each step looks again first, so a
// batch that ran before (a crash, a second run) adds nothing twice.
func (im *importer) writeOne(tx core.App, p importPlan, fresh *core.Record, done *importSummary) error {
	affiliate := p.existing
	added := false
	if affiliate == nil {
		if err := tx.Save(fresh); err != nil {
			return fmt.Errorf("create affiliate: %w", err)
		}
		affiliate = fresh
		done.Created++
		if !im.opts.Notify {
			if err := im.skipWelcome(tx, affiliate); err != nil {
				return err
			}
		}
	}
	aliases, err := tx.FindCollectionByNameOrId(collections.CodeAliases)
	if err != nil {
		return err
	}
	for _, c := range p.row.Codes() {
		if n, err := countWhere(tx, collections.CodeAliases, dbx.HashExp{collections.FieldCode: c}); err != nil || n > 0 {
			if err != nil {
				return err
			}
			continue
		}
		a := core.NewRecord(aliases)
		a.Set(collections.FieldCode, c)
		a.Set(collections.FieldAffiliate, affiliate.Id)
		a.Set(collections.AliasSource, im.opts.Platform)
		if err := tx.Save(a); err != nil {
			return fmt.Errorf("legacy code %q: %w", c, err)
		}
		done.Aliases++
		added = true
	}
	if p.row.Coupon != "" {
		n, err := countWhere(tx, collections.Coupons, dbx.HashExp{collections.FieldProgram: im.program.Id, collections.FieldCode: p.row.Coupon})
		if err != nil {
			return err
		}
		if n == 0 {
			coupon, err := newRecordOf(tx, collections.Coupons, map[string]any{collections.FieldCode: p.row.Coupon,
				collections.FieldAffiliate: affiliate.Id, collections.FieldProgram: im.program.Id, collections.CouponActive: true})
			if err != nil {
				return err
			}
			if err := tx.Save(coupon); err != nil {
				return fmt.Errorf("coupon %q: %w", p.row.Coupon, err)
			}
			done.Coupons++
			added = true
		}
	}
	if im.opts.Balances && p.row.HasBalance && p.row.Balance != 0 {
		has, err := (&importer{app: tx, opts: im.opts}).hasOpeningBalance(affiliate.Id)
		if err != nil {
			return err
		}
		if !has {
			// An adjustment, as an admin's: payable now (what the old platform owed is due at
			// the next payout run), outside stats_daily like every adjustment.
			c, err := newRecordOf(tx, collections.Commissions, map[string]any{
				collections.FieldAffiliate: affiliate.Id, collections.FieldProgram: im.program.Id,
				collections.CommissionKind: collections.KindAdjustment, collections.FieldAmount: p.row.Balance,
				collections.FieldCurrency: im.program.Currency(), collections.FieldStatus: collections.CommissionPayable,
				collections.CommissionPayableAt: im.now().UTC(), "ref": importRef(im.opts.Platform, p.row.Email),
				"note": "Opening balance imported from " + im.opts.Platform,
			})
			if err != nil {
				return err
			}
			if err := tx.Save(c); err != nil {
				return fmt.Errorf("opening balance: %w", err)
			}
			done.Balances++
			added = true
		}
	}
	if p.row.HasBalance && !im.opts.Balances {
		done.BalancesIgnored++
	}
	if p.existing != nil {
		if added {
			done.Updated++
		} else {
			done.Skipped++
		}
	}
	return nil
}

// skipWelcome records the lifecycle mail an imported affiliate would get as skipped, in the
// import's transaction: the mail hook's delivery, written after commit with the same
// idempotency key, then adds nothing. Importing a program must not mail everyone in it.
func (im *importer) skipWelcome(tx core.App, a *core.Record) error {
	var template string
	switch a.GetString(collections.FieldStatus) {
	case collections.AffiliatePending:
		template = templateApplicationReceived
	case collections.AffiliateApproved:
		template = templateApproved
	default:
		return nil
	}
	_, err := insertDelivery(tx.DB(), deliveryRow{Affiliate: a.Id, Email: a.Email(), Template: template,
		Status: collections.DeliverySkipped, IdempotencyKey: "lifecycle:" + template + ":" + a.Id,
		Error: "imported without --notify"}, im.now())
	return err
}

func countWhere(app core.App, table string, where dbx.Expression) (int, error) {
	var n int
	if err := app.DB().Select("count(*)").From(table).Where(where).Row(&n); err != nil {
		return 0, fmt.Errorf("count %s: %w", table, err)
	}
	return n, nil
}

func newRecordOf(app core.App, collection string, data map[string]any) (*core.Record, error) {
	c, err := app.FindCollectionByNameOrId(collection)
	if err != nil {
		return nil, err
	}
	r := core.NewRecord(c)
	for k, v := range data {
		r.Set(k, v)
	}
	return r, nil
}

// count adds what a plan would do (a dry run).
func (s *importSummary) count(p importPlan, balances bool) {
	added := len(p.aliases) > 0 || p.coupon || balances && p.balance
	switch {
	case p.existing == nil:
		s.Created++
	case added:
		s.Updated++
	default:
		s.Skipped++
	}
	s.Aliases += len(p.aliases)
	if p.coupon {
		s.Coupons++
	}
	if p.balance && balances {
		s.Balances++
	}
	if p.row.HasBalance && !balances {
		s.BalancesIgnored++
	}
}

func (s *importSummary) add(o importSummary) {
	s.Created += o.Created
	s.Updated += o.Updated
	s.Skipped += o.Skipped
	s.Coupons += o.Coupons
	s.Aliases += o.Aliases
	s.Balances += o.Balances
	s.BalancesIgnored += o.BalancesIgnored
}

// sortProblems orders problems by line, the file's own before the database's on each line.
func sortProblems(ps []importfile.Problem) []importfile.Problem {
	slices.SortStableFunc(ps, func(a, b importfile.Problem) int { return cmp.Compare(a.Line, b.Line) })
	return ps
}

func printImport(w io.Writer, s importSummary) {
	for _, p := range s.Problems {
		fmt.Fprintln(w, p.String())
	}
	if len(s.Problems) > 0 {
		return
	}
	verb := "imported"
	if s.DryRun {
		verb = "would import (dry run)"
	}
	fmt.Fprintf(w, "import from %s into program %s %s: created %d, updated %d, skipped %d (unchanged), coupons %d, legacy codes %d, opening balances %d\n",
		s.Platform, s.Program, verb, s.Created, s.Updated, s.Skipped, s.Coupons, s.Aliases, s.Balances)
	if s.BalancesIgnored > 0 {
		fmt.Fprintf(w, "%d balances in the file were not imported: pass --balances to import them as opening balances (%s)\n",
			s.BalancesIgnored, strings.ToUpper(s.Currency))
	}
}
