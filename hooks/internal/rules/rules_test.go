package rules

import (
	"encoding/json"
	"errors"
	"math"
	"math/rand"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/pbaffiliate/pbaffiliate/hooks/internal/money"
)

// t0 is the fixed "now" of the table tests; tiers3 is a ladder with a valueless rung.
var (
	t0     = time.Date(2026, 1, 15, 12, 0, 0, 0, time.UTC)
	tiers3 = []Tier{
		{ID: "bronze", Name: "Bronze", Rank: 1, CommissionValue: 2500},
		{ID: "silver", Name: "Silver", Rank: 2, MinRevenue: 100_000, CommissionValue: 3000},
		{ID: "gold", Name: "Gold", Rank: 3, MinRevenue: 1_000_000, CommissionValue: 4000},
		{ID: "novalue", Name: "No value", Rank: 4},
	}
)

func sale(amount int64) Conversion {
	return Conversion{Amount: amount, Currency: "usd", Kind: KindSale, OccurredAt: t0, PaymentNumber: 1}
}

func pct(bp int64) Program {
	return Program{CommissionType: TypePercent, CommissionValue: bp, Recurring: RecurringFirst, Currency: "usd"}
}

func flat(v int64) Program {
	return Program{CommissionType: TypeFlat, CommissionValue: v, Recurring: RecurringFirst, Currency: "usd"}
}

func TestComputeRates(t *testing.T) {
	tests := []struct {
		name   string
		c      Conversion
		p      Program
		a      Affiliate
		want   int64
		source string
		value  int64
		tierID string
		note   string
	}{
		{"program percent", sale(10_000), pct(2000), Affiliate{}, 2000, SourceProgram, 2000, "", ""},
		{"program flat", sale(10_000), flat(500), Affiliate{}, 500, SourceProgram, 500, "", ""},
		{"flat ignores amount", sale(1), flat(500), Affiliate{}, 500, SourceProgram, 500, "", ""},
		{"flat on zero amount", sale(0), flat(500), Affiliate{}, 500, SourceProgram, 500, "", ""},
		{"tier beats program", sale(10_000), pct(2000), Affiliate{TierID: "silver"}, 3000, SourceTier, 3000, "silver", ""},
		{"tier flat", sale(10_000), flat(500), Affiliate{TierID: "gold"}, 4000, SourceTier, 4000, "gold", ""},
		{"override beats tier", sale(10_000), pct(2000), Affiliate{TierID: "gold", CommissionOverride: 5000}, 5000, SourceOverride, 5000, "", ""},
		{"override beats program", sale(10_000), pct(2000), Affiliate{CommissionOverride: 1000}, 1000, SourceOverride, 1000, "", ""},
		{"override read as flat", sale(10_000), flat(500), Affiliate{CommissionOverride: 750}, 750, SourceOverride, 750, "", ""},
		{"negative override ignored", sale(10_000), pct(2000), Affiliate{CommissionOverride: -5}, 2000, SourceProgram, 2000, "", ""},
		{"empty tier id -> program", sale(10_000), pct(2000), Affiliate{TierID: ""}, 2000, SourceProgram, 2000, "", ""},
		{"unknown tier -> program", sale(10_000), pct(2000), Affiliate{TierID: "platinum"}, 2000, SourceProgram, 2000, "", NoteTierNotFound},
		{"tier without value -> program", sale(10_000), pct(2000), Affiliate{TierID: "novalue"}, 2000, SourceProgram, 2000, "", NoteTierNoValue},
		{"assigned tier used regardless of perf", sale(10_000), pct(2000), Affiliate{TierID: "bronze"}, 2500, SourceTier, 2500, "bronze", ""},
		{"rounding half even", sale(25), pct(1000), Affiliate{}, 2, SourceProgram, 1000, "", ""},    // 2.5 -> 2
		{"rounding half even up", sale(35), pct(1000), Affiliate{}, 4, SourceProgram, 1000, "", ""}, // 3.5 -> 4
		{"zero percent", sale(10_000), pct(0), Affiliate{}, 0, SourceProgram, 0, "", NoteZeroCommission},
		{"zero amount percent", sale(0), pct(2000), Affiliate{}, 0, SourceProgram, 2000, "", NoteZeroCommission},
		{"tiny amount rounds to zero", sale(1), pct(1005), Affiliate{}, 0, SourceProgram, 1005, "", NoteZeroCommission},
		{"negative program value", sale(10_000), pct(-100), Affiliate{}, 0, SourceProgram, -100, "", NoteZeroCommission},
		{"zero flat", sale(10_000), flat(0), Affiliate{}, 0, SourceProgram, 0, "", NoteZeroCommission},
		{"negative flat", sale(10_000), flat(-1), Affiliate{}, 0, SourceProgram, -1, "", NoteZeroCommission},
		{"max amount", sale(MaxAmount), pct(10000), Affiliate{}, MaxAmount, SourceProgram, 10000, "", ""},
		{"currency case-insensitive", Conversion{Amount: 100, Currency: "USD", OccurredAt: t0, PaymentNumber: 1}, pct(5000), Affiliate{}, 50, SourceProgram, 5000, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Compute(tt.c, tt.p, tt.a, tiers3, Performance{})
			if err != nil {
				t.Fatalf("Compute: %v", err)
			}
			if r.Amount != tt.want {
				t.Errorf("Amount = %d, want %d", r.Amount, tt.want)
			}
			e := r.Rule
			if e.Source != tt.source || e.Value != tt.value || e.TierID != tt.tierID || e.Note != tt.note {
				t.Errorf("Rule = %+v, want source %q value %d tier %q note %q", e, tt.source, tt.value, tt.tierID, tt.note)
			}
			if e.Type != tt.p.CommissionType || e.Base != tt.c.Amount || e.Payment != tt.c.PaymentNumber || e.Recurring != tt.p.Recurring {
				t.Errorf("Rule context = %+v", e)
			}
			if tt.tierID != "" && e.TierName == "" {
				t.Errorf("TierName missing: %+v", e)
			}
		})
	}
}

func TestComputeErrors(t *testing.T) {
	okP := pct(2000)
	tests := []struct {
		name string
		c    Conversion
		p    Program
		a    Affiliate
		want error
	}{
		{"negative amount", sale(-1), okP, Affiliate{}, ErrInvalidConversion},
		{"amount too large", sale(MaxAmount + 1), okP, Affiliate{}, ErrInvalidConversion},
		{"unknown kind", Conversion{Amount: 1, Currency: "usd", Kind: "refund"}, okP, Affiliate{}, ErrInvalidConversion},
		{"negative payment number", Conversion{Amount: 1, Currency: "usd", PaymentNumber: -1}, okP, Affiliate{}, ErrInvalidConversion},
		{"missing conversion currency", Conversion{Amount: 1}, okP, Affiliate{}, ErrInvalidConversion},
		{"currency mismatch", Conversion{Amount: 1, Currency: "eur", PaymentNumber: 1}, okP, Affiliate{}, ErrCurrencyMismatch},
		{"currency mismatch flat", Conversion{Amount: 1, Currency: "gbp", PaymentNumber: 1}, flat(100), Affiliate{}, ErrCurrencyMismatch},
		{"missing program currency", sale(1), Program{CommissionType: TypePercent, CommissionValue: 1}, Affiliate{}, ErrInvalidProgram},
		{"unknown type", sale(1), Program{CommissionType: "tiered", Currency: "usd"}, Affiliate{}, ErrInvalidProgram},
		{"unknown recurring", sale(1), Program{CommissionType: TypeFlat, Recurring: "forever", Currency: "usd"}, Affiliate{}, ErrInvalidProgram},
		{"negative months", sale(1), Program{CommissionType: TypeFlat, Recurring: RecurringMonths, RecurringMonths: -1, Currency: "usd"}, Affiliate{}, ErrInvalidProgram},
		{"percent above 100", sale(1), pct(10001), Affiliate{}, ErrInvalidProgram},
		{"override above 100", sale(1), pct(2000), Affiliate{CommissionOverride: 10001}, ErrInvalidProgram},
		{"tier above 100", sale(1), pct(2000), Affiliate{TierID: "x"}, ErrInvalidProgram},
		{"flat too large", sale(1), flat(MaxAmount + 1), Affiliate{}, ErrInvalidProgram},
		{"months renewal without start", Conversion{Amount: 1, Currency: "usd", Kind: KindRecurring, PaymentNumber: 2, OccurredAt: t0},
			Program{CommissionType: TypeFlat, CommissionValue: 1, Recurring: RecurringMonths, RecurringMonths: 3, Currency: "usd"}, Affiliate{}, ErrInvalidConversion},
	}
	tiers := []Tier{{ID: "x", Rank: 1, CommissionValue: 20000}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Compute(tt.c, tt.p, tt.a, tiers, Performance{})
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if !reflect.DeepEqual(r, Result{}) {
				t.Errorf("Result = %+v, want zero on error", r)
			}
		})
	}
}

func TestComputeRecurring(t *testing.T) {
	start := time.Date(2024, 1, 31, 12, 0, 0, 0, time.UTC)
	anniv3 := start.AddDate(0, 3, 0) // 2024-05-01 12:00 (Apr 31 normalises)
	prog := func(mode string, months int) Program {
		return Program{CommissionType: TypePercent, CommissionValue: 1000, Recurring: mode, RecurringMonths: months, Currency: "usd"}
	}
	conv := func(n int, kind string, at time.Time) Conversion {
		return Conversion{Amount: 5000, Currency: "usd", Kind: kind, SubscriptionStart: start, OccurredAt: at, PaymentNumber: n}
	}
	tests := []struct {
		name string
		c    Conversion
		p    Program
		want int64
		note string
	}{
		{"first: first payment earns", conv(1, KindSale, start), prog(RecurringFirst, 0), 500, ""},
		{"first: first payment kind recurring earns", conv(1, KindRecurring, start), prog(RecurringFirst, 0), 500, ""},
		{"first: second payment", conv(2, KindRecurring, start.AddDate(0, 1, 0)), prog(RecurringFirst, 0), 0, NoteFirstOnly},
		{"first: second payment kind sale", conv(2, KindSale, start.AddDate(0, 1, 0)), prog(RecurringFirst, 0), 0, NoteFirstOnly},
		{"first: unknown number kind recurring", conv(0, KindRecurring, start), prog(RecurringFirst, 0), 0, NoteFirstOnly},
		{"first: unknown number kind sale earns", conv(0, KindSale, start), prog(RecurringFirst, 0), 500, ""},
		{"first: empty kind unknown number earns", conv(0, "", start), prog(RecurringFirst, 0), 500, ""},
		{"empty mode means first", conv(2, KindRecurring, start), prog("", 0), 0, NoteFirstOnly},
		{"empty mode first payment", conv(1, KindSale, start), prog("", 0), 500, ""},
		{"lifetime: payment 2", conv(2, KindRecurring, start.AddDate(0, 1, 0)), prog(RecurringLifetime, 0), 500, ""},
		{"lifetime: payment 120", conv(120, KindRecurring, start.AddDate(10, 0, 0)), prog(RecurringLifetime, 0), 500, ""},
		{"months: first payment always earns", conv(1, KindSale, start), prog(RecurringMonths, 0), 500, ""},
		{"months: first payment earns even late", conv(1, KindSale, start.AddDate(1, 0, 0)), prog(RecurringMonths, 3), 500, ""},
		{"months: inside window", conv(2, KindRecurring, start.AddDate(0, 1, 0)), prog(RecurringMonths, 3), 500, ""},
		{"months: one second before anniversary earns", conv(4, KindRecurring, anniv3.Add(-time.Second)), prog(RecurringMonths, 3), 500, ""},
		{"months: one ns before anniversary earns", conv(4, KindRecurring, anniv3.Add(-1)), prog(RecurringMonths, 3), 500, ""},
		{"months: exactly on anniversary earns nothing", conv(4, KindRecurring, anniv3), prog(RecurringMonths, 3), 0, NoteRecurringEnded},
		{"months: after window", conv(5, KindRecurring, anniv3.AddDate(0, 1, 0)), prog(RecurringMonths, 3), 0, NoteRecurringEnded},
		{"months: zero months no renewals", conv(2, KindRecurring, start.Add(time.Hour)), prog(RecurringMonths, 0), 0, NoteRecurringEnded},
		{"months: other time zone same instant", conv(4, KindRecurring, anniv3.In(time.FixedZone("x", -5*3600))), prog(RecurringMonths, 3), 0, NoteRecurringEnded},
		{"months: 12 month window", conv(12, KindRecurring, start.AddDate(0, 11, 0)), prog(RecurringMonths, 12), 500, ""},
		{"months: 12 month anniversary", conv(13, KindRecurring, start.AddDate(1, 0, 0)), prog(RecurringMonths, 12), 0, NoteRecurringEnded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Compute(tt.c, tt.p, Affiliate{}, nil, Performance{})
			if err != nil {
				t.Fatalf("Compute: %v", err)
			}
			if r.Amount != tt.want || r.Rule.Note != tt.note {
				t.Errorf("got amount %d note %q, want %d %q", r.Amount, r.Rule.Note, tt.want, tt.note)
			}
			if r.Rule.Payment != tt.c.PaymentNumber {
				t.Errorf("Payment = %d", r.Rule.Payment)
			}
			wantMode := tt.p.Recurring
			if wantMode == "" {
				wantMode = RecurringFirst
			}
			if r.Rule.Recurring != wantMode {
				t.Errorf("Recurring = %q, want %q", r.Rule.Recurring, wantMode)
			}
		})
	}
}

func TestComputeIgnoresPerformanceForRate(t *testing.T) {
	a := Affiliate{TierID: "bronze"}
	r1, err1 := Compute(sale(10_000), pct(2000), a, tiers3, Performance{})
	r2, err2 := Compute(sale(10_000), pct(2000), a, tiers3, Performance{Revenue: 10_000_000, Conversions: 1000})
	if err1 != nil || err2 != nil || !reflect.DeepEqual(r1, r2) {
		t.Fatalf("perf changed result: %+v %v / %+v %v", r1, err1, r2, err2)
	}
}

func TestTierFor(t *testing.T) {
	ladder := []Tier{
		{ID: "base", Rank: 0},
		{ID: "rev", Rank: 1, MinRevenue: 100_000},
		{ID: "conv", Rank: 2, MinConversions: 10},
		{ID: "both", Rank: 3, MinRevenue: 500_000, MinConversions: 50},
	}
	tests := []struct {
		name   string
		tiers  []Tier
		perf   Performance
		want   string
		wantOK bool
	}{
		{"empty list", nil, Performance{Revenue: 1e9, Conversions: 1e6}, "", false},
		{"empty slice", []Tier{}, Performance{}, "", false},
		{"nothing met", []Tier{{ID: "a", Rank: 1, MinRevenue: 1}}, Performance{}, "", false},
		{"zero thresholds always met", ladder, Performance{}, "base", true},
		{"revenue just below", ladder, Performance{Revenue: 99_999}, "base", true},
		{"revenue exactly", ladder, Performance{Revenue: 100_000}, "rev", true},
		{"conversions exactly", ladder, Performance{Conversions: 10}, "conv", true},
		{"conversions beat revenue by rank", ladder, Performance{Revenue: 100_000, Conversions: 10}, "conv", true},
		{"both needed: revenue only", ladder, Performance{Revenue: 1_000_000, Conversions: 9}, "rev", true},
		{"both needed: conversions only", ladder, Performance{Revenue: 499_999, Conversions: 500}, "conv", true},
		{"both met", ladder, Performance{Revenue: 500_000, Conversions: 50}, "both", true},
		{"down when performance drops", ladder, Performance{Revenue: 0, Conversions: 0}, "base", true},
		{"tie goes to smaller ID", []Tier{{ID: "b", Rank: 2}, {ID: "a", Rank: 2}, {ID: "c", Rank: 1}}, Performance{}, "a", true},
		{"tie ignores unmet", []Tier{{ID: "a", Rank: 2, MinRevenue: 10}, {ID: "b", Rank: 2}}, Performance{}, "b", true},
		{"higher rank wins over ID", []Tier{{ID: "a", Rank: 1}, {ID: "z", Rank: 5}}, Performance{}, "z", true},
		{"negative ranks", []Tier{{ID: "a", Rank: -3}, {ID: "b", Rank: -1}}, Performance{}, "b", true},
		{"negative thresholds met", []Tier{{ID: "a", Rank: 1, MinRevenue: -5, MinConversions: -1}}, Performance{}, "a", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := TierFor(tt.tiers, tt.perf)
			if ok != tt.wantOK || got.ID != tt.want {
				t.Fatalf("TierFor = %q, %v; want %q, %v", got.ID, ok, tt.want, tt.wantOK)
			}
			if !ok && got != (Tier{}) {
				t.Errorf("want zero Tier when not found, got %+v", got)
			}
		})
	}
}

func TestTierForOrderIndependent(t *testing.T) {
	tiers := []Tier{{ID: "b", Rank: 2}, {ID: "a", Rank: 2}, {ID: "c", Rank: 2}, {ID: "d", Rank: 1}}
	orig := slices.Clone(tiers)
	rng := rand.New(rand.NewSource(7))
	for range 100 {
		rng.Shuffle(len(tiers), func(i, j int) { tiers[i], tiers[j] = tiers[j], tiers[i] })
		if got, _ := TierFor(tiers, Performance{}); got.ID != "a" {
			t.Fatalf("order %v gave %q", tiers, got.ID)
		}
	}
	cp := slices.Clone(tiers)
	TierFor(cp, Performance{})
	if !slices.Equal(cp, tiers) || len(orig) != len(tiers) {
		t.Fatal("TierFor modified its input")
	}
}

func TestClawback(t *testing.T) {
	tests := []struct {
		name                         string
		commission, amount, refunded int64
		want                         int64
	}{
		{"full refund", 2000, 10_000, 10_000, 2000},
		{"over refund", 2000, 10_000, 15_000, 2000},
		{"half refund", 2000, 10_000, 5000, 1000},
		{"partial exact", 2000, 10_000, 2500, 500},
		{"partial rounds half even down", 1, 2, 1, 0},   // 0.5 -> 0
		{"partial rounds half even up", 3, 2, 1, 2},     // 1.5 -> 2
		{"partial rounds half even 2.5", 5, 2, 1, 2},    // 2.5 -> 2
		{"partial rounds above half", 2, 3, 1, 1},       // 0.667 -> 1
		{"partial rounds below half", 1, 3, 1, 0},       // 0.333 -> 0
		{"one cent of large", 2000, 10_000, 1, 0},       // 0.2
		{"no refund", 2000, 10_000, 0, 0},               // nothing
		{"negative refund", 2000, 10_000, -5, 0},        // nothing
		{"zero amount guard", 2000, 0, 100, 0},          // no division by zero
		{"zero amount zero refund", 2000, 0, 0, 0},      // no division by zero
		{"negative amount guard", 2000, -10, 5, 0},      // nonsense in, nothing out
		{"zero commission", 0, 10_000, 10_000, 0},       // nothing to reverse
		{"negative commission", -50, 10_000, 10_000, 0}, // never negative
		{"flat commission above amount", 5000, 100, 50, 2500},
		{"large no overflow", MaxAmount, MaxAmount, MaxAmount - 1, MaxAmount - 1},
		{"large partial", 20_000_000_000, MaxAmount, 33_333_333_333, 6_666_666_667}, // 6666666666.6
		{"huge values", math.MaxInt64, math.MaxInt64, math.MaxInt64 - 1, math.MaxInt64 - 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Clawback(tt.commission, tt.amount, tt.refunded); got != tt.want {
				t.Errorf("Clawback(%d, %d, %d) = %d, want %d", tt.commission, tt.amount, tt.refunded, got, tt.want)
			}
		})
	}
}

func TestExplanationJSON(t *testing.T) {
	r, err := Compute(sale(10_000), pct(2000), Affiliate{TierID: "silver"}, tiers3, Performance{})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(r.Rule.JSON(), &m); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"source": "tier", "type": "percent", "value": 3000.0, "tier_id": "silver", "tier_name": "Silver",
		"base": 10000.0, "recurring": "first", "payment": 1.0,
	}
	if len(m) != len(want) {
		t.Errorf("keys = %v, want %v", m, want)
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}

	// omitempty: no tier fields for program source; note present when set.
	e := Explanation{Source: SourceProgram, Type: TypeFlat, Value: 5, Recurring: RecurringFirst, Note: NoteZeroCommission}
	got := string(e.JSON())
	const wantJSON = `{"source":"program","type":"flat","value":5,"base":0,"recurring":"first","payment":0,"note":"zero commission: not created"}`
	if got != wantJSON {
		t.Errorf("JSON = %s\nwant   %s", got, wantJSON)
	}

	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back Result
	if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, r) {
		t.Errorf("round trip: %s -> %+v (%v)", b, back, err)
	}
}

// TestProperties checks invariants over random inputs with a fixed seed.
func TestProperties(t *testing.T) {
	rng := rand.New(rand.NewSource(20240601))
	tiers := []Tier{
		{ID: "t1", Name: "T1", Rank: 1, CommissionValue: 1500},
		{ID: "t2", Name: "T2", Rank: 2, CommissionValue: 10000},
		{ID: "t3", Name: "T3", Rank: 3, CommissionValue: 0},
	}
	tierIDs := []string{"", "t1", "t2", "t3", "missing"}
	for i := range 10_000 {
		// percent programs: 0 <= commission <= amount
		amount := rng.Int63n(MaxAmount + 1)
		if i%4 == 0 {
			amount = rng.Int63n(1000) // exercise rounding on small amounts
		}
		p := pct(rng.Int63n(MaxPercentBP + 1))
		p.Recurring = []string{RecurringFirst, RecurringMonths, RecurringLifetime}[rng.Intn(3)]
		p.RecurringMonths = rng.Intn(24)
		a := Affiliate{TierID: tierIDs[rng.Intn(len(tierIDs))]}
		if rng.Intn(3) == 0 {
			a.CommissionOverride = rng.Int63n(MaxPercentBP + 1)
		}
		n := 1 + rng.Intn(30)
		c := Conversion{
			Amount: amount, Currency: "usd", Kind: KindRecurring, PaymentNumber: n,
			SubscriptionStart: t0, OccurredAt: t0.AddDate(0, n-1, rng.Intn(3)),
		}
		r, err := Compute(c, p, a, tiers, Performance{})
		if err != nil {
			t.Fatalf("Compute(%+v, %+v, %+v): %v", c, p, a, err)
		}
		if r.Amount < 0 || r.Amount > amount {
			t.Fatalf("Compute(%+v, %+v, %+v) = %d, outside [0, %d]", c, p, a, r.Amount, amount)
		}
		if r.Amount == 0 && r.Rule.Note == "" {
			t.Fatalf("zero commission without note: %+v", r)
		}
		if want := money.PercentOf(amount, r.Rule.Value); r.Amount != 0 && r.Amount != want {
			t.Fatalf("Amount %d != PercentOf(%d, %d) = %d", r.Amount, amount, r.Rule.Value, want)
		}

		// Clawback: monotonic in refunded, within [0, commission]
		conv := rng.Int63n(MaxAmount) + 1
		if i%4 == 1 {
			conv = rng.Int63n(100) + 1
		}
		com := rng.Int63n(conv + 1)
		if i%5 == 0 {
			com = rng.Int63n(MaxAmount + 1) // flat commissions may exceed the amount
		}
		r1 := rng.Int63n(conv + conv/2 + 2)
		r2 := rng.Int63n(conv + conv/2 + 2)
		if r1 > r2 {
			r1, r2 = r2, r1
		}
		c1, c2 := Clawback(com, conv, r1), Clawback(com, conv, r2)
		if c1 < 0 || c2 > com || c1 > c2 {
			t.Fatalf("Clawback(%d, %d, r): r=%d -> %d, r=%d -> %d", com, conv, r1, c1, r2, c2)
		}
		if r2 >= conv && c2 != com {
			t.Fatalf("full refund Clawback(%d, %d, %d) = %d", com, conv, r2, c2)
		}
	}
}
