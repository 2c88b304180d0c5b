package hooks

import (
	"encoding/csv"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/csvsafe"
	"github.com/pbaffiliate/pbaffiliate/hooks/internal/money"
	"github.com/pbaffiliate/pbaffiliate/hooks/store"
)

// exportPage is how many rows one query of an export reads: exports stream, so a table of
// millions never sits in memory.
const exportPage = 1000

// exportSpec describes one CSV export: the table (aliased t, joined to its affiliate as a),
// the selected columns in output order, the ones affiliates typed (defused for spreadsheets),
// the date column from/to filter on, and whether amounts get a decimal column.
type exportSpec struct {
	table   string
	columns []string // "t.col" or "a.col AS name": the CSV header is the alias or column name
	header  []string
	typed   map[string]bool
	dateCol string
	money   bool
}

// exportSpecs are the exports of /api/pba/export/{name}.csv (docs/http-api.md) besides payouts.
func exportSpecs() map[string]exportSpec {
	return map[string]exportSpec{
		"affiliates": {
			table: collections.Affiliates,
			columns: []string{"t.id", "t.name", "t.email", "t.code", "t.status", "t.program", "t.tier", "t.commission_override",
				"t.payout_method", "t.payout_email", "t.stripe_account_id", "t.payouts_enabled", "t.preferred_channel",
				"t.timezone", "t.tags", "t.notes", "t.created"},
			header: []string{"id", "name", "email", "code", "status", "program", "tier", "commission_override", "payout_method",
				"payout_email", "stripe_account_id", "payouts_enabled", "preferred_channel", "timezone", "tags", "notes", "created"},
			typed:   map[string]bool{"name": true, "email": true, "code": true, "payout_email": true, "notes": true, "tags": true, "timezone": true},
			dateCol: "created",
		},
		"conversions": {
			table: collections.Conversions,
			columns: []string{"t.id", "t.affiliate", "IFNULL(a.code, '')", "t.program", "t.source", "t.external_id", "t.amount", "t.currency",
				"t.status", "t.customer", "t.click", "t.occurred_at", "t.created"},
			header: []string{"id", "affiliate", "affiliate_code", "program", "source", "external_id", "amount_minor", "currency",
				"status", "customer", "click", "occurred_at", "created"},
			typed:   map[string]bool{"affiliate_code": true, "external_id": true, "customer": true},
			dateCol: "occurred_at",
			money:   true,
		},
		"commissions": {
			table: collections.Commissions,
			columns: []string{"t.id", "t.affiliate", "IFNULL(a.code, '')", "t.program", "t.conversion", "t.kind", "t.amount", "t.currency",
				"t.status", "t.payable_at", "t.payout", "t.note", "t.created"},
			header: []string{"id", "affiliate", "affiliate_code", "program", "conversion", "kind", "amount_minor", "currency",
				"status", "payable_at", "payout", "note", "created"},
			typed:   map[string]bool{"affiliate_code": true, "note": true},
			dateCol: "created",
			money:   true,
		},
	}
}

// exportHandler answers GET /api/pba/export/{name}.csv (superusers) for one export spec.
func exportHandler(name string, spec exportSpec) func(*core.RequestEvent) error {
	return func(re *core.RequestEvent) error { return writeExport(re, name, spec) }
}

// writeExport streams one export, filtered by program, status and an inclusive UTC date range
// (from, to as YYYY-MM-DD) on the spec's date column, in id order.
func writeExport(re *core.RequestEvent, name string, spec exportSpec) error {
	q := re.Request.URL.Query()
	where, params := "t.[[id]] > {:after}", dbx.Params{}
	for _, f := range []struct{ param, col string }{{"from", ">="}, {"to", "<"}} {
		v := q.Get(f.param)
		if v == "" {
			continue
		}
		d, err := time.Parse(time.DateOnly, v)
		if err != nil {
			return re.BadRequestError("Invalid "+f.param+".", fieldError(f.param, "invalid_date", "Use YYYY-MM-DD."))
		}
		if f.param == "to" {
			d = d.AddDate(0, 0, 1)
		}
		where += " AND t.[[" + spec.dateCol + "]] " + f.col + " {:" + f.param + "}"
		params[f.param] = store.DBTime(d)
	}
	if v := q.Get("program"); v != "" {
		where += " AND t.[[program]] = {:program}"
		params["program"] = v
	}
	if v := q.Get("status"); v != "" {
		where += " AND t.[[status]] = {:status}"
		params["status"] = v
	}
	join := ""
	if spec.table != collections.Affiliates {
		join = " LEFT JOIN {{affiliates}} a ON a.[[id]] = t.[[affiliate]]"
	}
	sel := ""
	for i, c := range spec.columns {
		if i > 0 {
			sel += ", "
		}
		sel += c + " AS " + strconv.Quote("c"+strconv.Itoa(i))
	}
	var blank []bool // an API key's export leaves hidden fields (an admin's notes) empty
	if apiKeyOf(re) != nil {
		var err error
		if blank, err = hiddenColumns(re.App, spec); err != nil {
			return re.InternalServerError("", err)
		}
	}
	header := spec.header
	if spec.money {
		header = append(append([]string{}, header...), "amount")
	}
	re.Response.Header().Set("Content-Type", "text/csv; charset=utf-8")
	re.Response.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s-%s.csv"`, name, time.Now().UTC().Format("20060102")))
	re.Response.WriteHeader(http.StatusOK)
	w := csv.NewWriter(re.Response)
	if err := w.Write(header); err != nil {
		return err
	}
	after := ""
	for {
		params["after"] = after
		params["n"] = exportPage
		rows, err := re.App.DB().NewQuery("SELECT " + sel + " FROM {{" + spec.table + "}} t" + join + " WHERE " + where +
			" ORDER BY t.[[id]] LIMIT {:n}").Bind(params).Rows()
		if err != nil {
			return fmt.Errorf("export %s: %w", name, err) // headers are out: the CSV ends short
		}
		n := 0
		for rows.Next() {
			vals := make([]any, len(spec.columns))
			ptrs := make([]any, len(vals))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				rows.Close()
				return fmt.Errorf("export %s: %w", name, err)
			}
			rec := make([]string, len(vals), len(header))
			for i, v := range vals {
				rec[i] = exportCell(v)
				if blank != nil && blank[i] {
					rec[i] = ""
				}
				if spec.typed[spec.header[i]] {
					rec[i] = csvsafe.Cell(rec[i])
				}
			}
			if spec.money {
				amount, _ := strconv.ParseInt(rec[slices.Index(spec.header, "amount_minor")], 10, 64)
				rec = append(rec, money.Format(amount, rec[slices.Index(spec.header, "currency")]))
			}
			if err := w.Write(rec); err != nil {
				rows.Close()
				return err
			}
			after = rec[0]
			n++
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("export %s: %w", name, err)
		}
		w.Flush()
		if err := w.Error(); err != nil {
			return err
		}
		if n < exportPage {
			return nil
		}
	}
}

// hiddenColumns says which of spec's columns (t.<field> of its table, a.<field> of the
// affiliate) are hidden fields, which only superusers read.
func hiddenColumns(app core.App, spec exportSpec) ([]bool, error) {
	out := make([]bool, len(spec.columns))
	for i, c := range spec.columns {
		table, field, ok := strings.Cut(c, ".")
		if !ok {
			continue
		}
		name := spec.table
		if table == "a" {
			name = collections.Affiliates
		}
		coll, err := app.FindCachedCollectionByNameOrId(name)
		if err != nil {
			return nil, err
		}
		if f := coll.Fields.GetByName(field); f != nil && f.GetHidden() {
			out[i] = true
		}
	}
	return out, nil
}

// exportCell renders a scanned SQLite value.
func exportCell(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case []byte:
		return string(x)
	case string:
		return x
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	default:
		return fmt.Sprint(x)
	}
}
