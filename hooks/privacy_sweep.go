package hooks

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
)

// needle is a personal value an erasure removes from every collection: find (lowercase) is
// replaced by with, inside any text (whole = false: addresses, URLs) or where a text or JSON
// string value is exactly it (whole = true: names, answers).
type needle struct {
	find, with string
	whole      bool
}

// sweepSkips are the collections the sweep leaves alone: the affiliates themselves (the
// erased one is done by its record; another affiliate's profile is theirs), the staff, and
// the record of the requests.
var sweepSkips = []string{collections.Affiliates, core.CollectionNameSuperusers, collections.PrivacyRequests}

// sweptTypes are the field types that can hold a person's words.
var sweptTypes = []string{core.FieldTypeText, core.FieldTypeEmail, core.FieldTypeURL, core.FieldTypeEditor, core.FieldTypeJSON}

// sweepPersonal replaces the needles in every text, email, URL, editor and JSON field of
// every collection (but sweepSkips), enumerated from the schema: collections other parts add
// later (outboxes, provider events, imports) are covered without a change here. Rows are
// found on the read connection (a scan of each table, clicks included, which never holds the
// write lock) and changed in one short transaction. It returns the rows changed per collection.
func sweepPersonal(app core.App, needles []needle) (map[string]int, error) {
	changed := map[string]int{}
	if len(needles) == 0 {
		return changed, nil
	}
	all, err := app.FindAllCollections()
	if err != nil {
		return nil, fmt.Errorf("sweep: %w", err)
	}
	type hit struct {
		collection *core.Collection
		fields     []core.Field
		ids        []string
	}
	var hits []hit
	for _, c := range all {
		if c.IsView() || slices.Contains(sweepSkips, c.Name) {
			continue
		}
		var fields []core.Field
		for _, f := range c.Fields {
			if slices.Contains(sweptTypes, f.Type()) && f.GetName() != "id" {
				fields = append(fields, f)
			}
		}
		if len(fields) == 0 {
			continue
		}
		var ids []string
		err := app.DB().Select("id").From(c.Name).Where(sweepCondition(fields, needles)).Column(&ids)
		if err != nil {
			return nil, fmt.Errorf("sweep %s: %w", c.Name, err)
		}
		if len(ids) > 0 {
			hits = append(hits, hit{c, fields, ids})
		}
	}
	if len(hits) == 0 {
		return changed, nil
	}
	err = app.RunInTransaction(func(tx core.App) error {
		for _, h := range hits {
			names := make([]string, len(h.fields))
			for i, f := range h.fields {
				names[i] = f.GetName()
			}
			for _, id := range h.ids {
				row := dbx.NullStringMap{}
				if err := tx.DB().Select(names...).From(h.collection.Name).Where(dbx.HashExp{"id": id}).One(row); err != nil {
					return fmt.Errorf("sweep %s %s: %w", h.collection.Name, id, err)
				}
				set := dbx.Params{}
				for _, f := range h.fields {
					v := row[f.GetName()]
					if !v.Valid {
						continue
					}
					if out, ok := scrub(v.String, f.Type() == core.FieldTypeJSON, needles); ok {
						set[f.GetName()] = out
					}
				}
				if len(set) == 0 {
					continue
				}
				if _, err := tx.DB().Update(h.collection.Name, set, dbx.HashExp{"id": id}).Execute(); err != nil {
					return fmt.Errorf("sweep %s %s: %w", h.collection.Name, id, err)
				}
				changed[h.collection.Name]++
			}
		}
		return nil
	})
	return changed, err
}

// sweepCondition finds rows whose fields may hold a needle (scrub decides): the needle, or
// the needle as JSON escapes it, inside the row's fields joined into one string. LIKE ignores
// ASCII case as lower() does, and one pattern per needle costs one comparison per row (the
// sweep reads every row of every table).
func sweepCondition(fields []core.Field, needles []needle) dbx.Expression {
	parts := make([]string, len(fields))
	for i, f := range fields {
		parts[i] = "COALESCE([[" + f.GetName() + "]], '')"
	}
	joined := strings.Join(parts, " || char(31) || ")
	var or []dbx.Expression
	for i, n := range needles {
		forms := []string{n.find}
		if esc := jsonEscaped(n.find); esc != n.find {
			forms = append(forms, esc)
		}
		for j, form := range forms {
			key := fmt.Sprintf("n%d_%d", i, j)
			or = append(or, dbx.NewExp(joined+" LIKE {:"+key+"} ESCAPE '\\'", dbx.Params{key: "%" + likeEscape(form) + "%"}))
		}
	}
	return dbx.Or(or...)
}

// likeEscape escapes LIKE's wildcards (and its escape character) in s.
func likeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, "%", `\%`, "_", `\_`).Replace(s)
}

// jsonEscaped is s as it stands inside a JSON string written by Go (& < > escaped).
func jsonEscaped(s string) string {
	b, _ := json.Marshal(s)
	return string(b[1 : len(b)-1])
}

// scrub returns value with the needles replaced, and whether it changed. A JSON value is
// scrubbed string by string (keys and values) and written again.
func scrub(value string, isJSON bool, needles []needle) (string, bool) {
	if !isJSON {
		out := scrubText(value, needles)
		return out, out != value
	}
	dec := json.NewDecoder(strings.NewReader(value))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		out := scrubText(value, needles) // not JSON after all: treat as text
		return out, out != value
	}
	changed := false
	var walk func(any) any
	walk = func(x any) any {
		switch t := x.(type) {
		case string:
			if out := scrubText(t, needles); out != t {
				changed = true
				return out
			}
		case []any:
			for i := range t {
				t[i] = walk(t[i])
			}
		case map[string]any:
			for k, val := range t {
				nk := scrubText(k, needles)
				if nk != k {
					changed = true
					delete(t, k)
				}
				t[nk] = walk(val)
			}
		}
		return x
	}
	v = walk(v)
	if !changed {
		return value, false
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return value, false
	}
	return strings.TrimSuffix(buf.String(), "\n"), true
}

// scrubText replaces the needles in s, ignoring case.
func scrubText(s string, needles []needle) string {
	for _, n := range needles {
		if n.whole {
			if strings.EqualFold(strings.TrimSpace(s), n.find) {
				s = n.with
			}
			continue
		}
		s = replaceFold(s, n.find, n.with)
	}
	return s
}

// replaceFold replaces every occurrence of lower (a lowercase string) in s, ignoring case.
func replaceFold(s, lower, with string) string {
	ls := strings.ToLower(s)
	if len(ls) != len(s) { // a character whose case changes its length: exact forms only
		return strings.ReplaceAll(strings.ReplaceAll(s, lower, with), strings.ToUpper(lower), with)
	}
	var b strings.Builder
	for {
		i := strings.Index(ls, lower)
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i])
		b.WriteString(with)
		s, ls = s[i+len(lower):], ls[i+len(lower):]
	}
}

// eraseLogs deletes the request-log rows (_logs, auxiliary.db) that name the affiliate: its
// id (when the log settings keep auth ids) or one of the needles anywhere in the row. The
// log keeps requests for the days of its settings (PocketBase's default 5).
func eraseLogs(app core.App, id string, needles []needle) (int, error) {
	or := []dbx.Expression{dbx.NewExp("json_extract(data, '$.authId') = {:id}", dbx.Params{"id": id})}
	for i, n := range needles {
		if n.whole {
			continue // names and answers are not what a request line holds
		}
		key := fmt.Sprintf("n%d", i)
		or = append(or, dbx.NewExp("instr(lower(data), {:"+key+"}) > 0 OR instr(lower(message), {:"+key+"}) > 0", dbx.Params{key: n.find}))
	}
	res, err := app.AuxNonconcurrentDB().Delete((&core.Log{}).TableName(), dbx.Or(or...)).Execute()
	if err != nil {
		return 0, fmt.Errorf("erase request log: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}
