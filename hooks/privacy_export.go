package hooks

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
)

// ExportFormat names the shape of GET /api/pba/affiliates/{id}/export (docs/http-api.md).
const ExportFormat = "pbaffiliate.affiliate-export.v1"

// exportOmits are fields that describe someone other than the affiliate and stay out of its
// export: the merchant's customer (the reference the merchant sent and its metadata).
var exportOmits = map[string][]string{
	collections.Conversions: {collections.ConversionCustomer, collections.ConversionMetadata},
}

// exportClicks is what the export says of the affiliate's clicks: their counts, not the rows,
// which hold the visitors' data (hashed IP, user agent, referrer), not the affiliate's. The
// per day and link figures are in records.stats_daily.
type exportClicks struct {
	Stored  int64            `json:"stored"`
	ByFlag  map[string]int64 `json:"by_flag"`
	First   string           `json:"first,omitempty"`
	Last    string           `json:"last,omitempty"`
	Omitted string           `json:"omitted"`
}

// handleExport is GET /api/pba/affiliates/{id}/export (superusers): everything held about an
// affiliate, as a JSON attachment streamed collection by collection.
func (p *privacy) handleExport(e *core.RequestEvent) error {
	aff, err := e.App.FindRecordById(collections.Affiliates, e.Request.PathValue("id"))
	if err != nil {
		return e.NotFoundError("No such affiliate.", fieldError("id", "not_found", "No affiliate has this id."))
	}
	refs, err := affiliateRefs(e.App)
	if err != nil {
		return e.InternalServerError("", err)
	}
	clicks, err := clickSummary(e.App, aff.Id)
	if err != nil {
		return e.InternalServerError("", err)
	}
	h := e.Response.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Disposition", `attachment; filename="affiliate-`+aff.Id+`.json"`)
	h.Set("Cache-Control", "no-store")
	e.Response.WriteHeader(http.StatusOK)

	w := bufio.NewWriterSize(e.Response, 32<<10)
	counts, werr := writeAffiliateExport(e.App, w, aff, refs, clicks, func() error {
		if err := w.Flush(); err != nil {
			return err // the client went away
		}
		if f, ok := e.Response.(http.Flusher); ok {
			f.Flush()
		}
		return nil
	})
	if werr == nil {
		werr = w.Flush()
	}
	summary := map[string]any{"records": counts, "clicks": clicks.Stored, "complete": werr == nil}
	if err := recordRequest(e.App, e, collections.PrivacyExport, aff.Id, summary); err != nil {
		return err // the status is sent: this reaches the log
	}
	if werr != nil {
		e.App.Logger().Warn("affiliate export interrupted", "affiliate", aff.Id, "error", werr)
	}
	return nil
}

// writeAffiliateExport writes the export document: the affiliate, its clicks' counts, then every row
// of every collection that names it (affiliateRefs), in collection order. flush is called
// after each page; its error (the client went away) ends the export. It returns the rows written per collection.
func writeAffiliateExport(app core.App, w *bufio.Writer, aff *core.Record, refs []affiliateRef, clicks exportClicks, flush func() error) (map[string]int, error) {
	head, err := json.Marshal(map[string]any{
		"format":      ExportFormat,
		"exported_at": time.Now().UTC().Format(time.RFC3339),
		"affiliate":   exportRecord(aff, aff.Id, aff.Collection().Id, true),
		"clicks":      clicks,
	})
	if err != nil {
		return nil, err
	}
	w.Write(head[:len(head)-1]) // the object stays open for "records"
	w.WriteString(`,"records":{`)

	byCollection := map[string][]affiliateRef{}
	var names []string
	for _, r := range refs {
		if r.collection.Name == collections.Clicks {
			continue // counted above
		}
		if _, ok := byCollection[r.collection.Name]; !ok {
			names = append(names, r.collection.Name)
		}
		byCollection[r.collection.Name] = append(byCollection[r.collection.Name], r)
	}
	slices.Sort(names)
	affiliatesID := aff.Collection().Id
	counts := map[string]int{}
	for i, name := range names {
		colRefs := byCollection[name]
		var cond []dbx.Expression
		for _, r := range colRefs {
			cond = append(cond, r.where(affiliatesID, aff.Id))
		}
		key, _ := json.Marshal(name)
		if i > 0 {
			w.WriteByte(',')
		}
		w.Write(key)
		w.WriteString(":[")
		n := 0
		for after := ""; ; {
			var rows []*core.Record
			err := app.RecordQuery(colRefs[0].collection).AndWhere(dbx.Or(cond...)).
				AndWhere(dbx.NewExp("[[id]] > {:after}", dbx.Params{"after": after})).
				OrderBy("id").Limit(exportPage).All(&rows)
			if err != nil {
				return counts, fmt.Errorf("export %s: %w", name, err)
			}
			for _, r := range rows {
				b, err := json.Marshal(exportRecord(r, aff.Id, affiliatesID, false))
				if err != nil {
					return counts, fmt.Errorf("export %s %s: %w", name, r.Id, err)
				}
				if n > 0 {
					w.WriteByte(',')
				}
				w.Write(b)
				n++
			}
			if err := flush(); err != nil {
				return counts, fmt.Errorf("export %s: %w", name, err)
			}
			if len(rows) < exportPage {
				break
			}
			after = rows[len(rows)-1].Id
		}
		w.WriteByte(']')
		counts[name] = n
	}
	_, err = w.WriteString("}}\n")
	return counts, err
}

// exportRecord is one row as exported: every field but credentials (secretField), hidden
// fields (internal state and staff names; except on the affiliate's own record: the admins'
// notes about it are its data) and exportOmits; a list of affiliates keeps only the subject.
func exportRecord(r *core.Record, subject, affiliatesID string, self bool) map[string]any {
	out := map[string]any{"id": r.Id}
	omit := exportOmits[r.Collection().Name]
	for _, f := range r.Collection().Fields {
		name := f.GetName()
		if name == "id" || secretField(f) || (f.GetHidden() && !self) || slices.Contains(omit, name) {
			continue
		}
		if rel, ok := f.(*core.RelationField); ok && rel.IsMultiple() && rel.CollectionId == affiliatesID {
			var ids []string
			if slices.Contains(r.GetStringSlice(name), subject) {
				ids = []string{subject}
			}
			out[name] = ids
			continue
		}
		out[name] = r.Get(name)
	}
	return out
}

// clickSummary counts an affiliate's stored click rows by flag, with the first and last
// (idx_clicks_affiliate: the affiliate's rows only).
func clickSummary(app core.App, affiliate string) (exportClicks, error) {
	out := exportClicks{ByFlag: map[string]int64{},
		Omitted: "click rows describe visitors (hashed IP, user agent, referrer), not the affiliate; records.stats_daily has the clicks per day and link, pruned ones included"}
	var rows []struct {
		Flag  string `db:"flag"`
		N     int64  `db:"n"`
		First string `db:"first"`
		Last  string `db:"last"`
	}
	err := app.DB().NewQuery(`SELECT flag, COUNT(*) AS n, MIN(created) AS first, MAX(created) AS last
		FROM {{clicks}} WHERE affiliate = {:a} GROUP BY flag`).Bind(dbx.Params{"a": affiliate}).All(&rows)
	if err != nil {
		return out, fmt.Errorf("clicks of %s: %w", affiliate, err)
	}
	for _, r := range rows {
		name := r.Flag
		if name == "" {
			name = "none"
		}
		out.ByFlag[name] = r.N
		out.Stored += r.N
		if out.First == "" || r.First < out.First {
			out.First = r.First
		}
		out.Last = max(out.Last, r.Last)
	}
	return out, nil
}
