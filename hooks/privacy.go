package hooks

import (
	"fmt"
	"strings"

	"github.com/pocketbase/dbx"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/collections"
)

// privacy answers data subjects' requests (GDPR arts. 15, 17 and 20) for superusers: an
// affiliate's data exported (privacy_export.go) or erased (privacy_erase.go), a visitor's
// clicks erased (privacy_visitor.go). Each request is recorded in privacy_requests.
type privacy struct {
	app      core.App
	tracking *tracker // the unique window a visitor's erased clicks leave; nil in CLI-less tests
}

func newPrivacy(app core.App, tracking *tracker) *privacy {
	return &privacy{app: app, tracking: tracking}
}

// recordRequest writes the privacy_requests row of a request: who asked (the superuser's
// email), about whom (an id) and what was done (counts, never personal data).
func recordRequest(app core.App, e *core.RequestEvent, kind, subject string, summary any) error {
	c, err := app.FindCachedCollectionByNameOrId(collections.PrivacyRequests)
	if err != nil {
		return err
	}
	r := core.NewRecord(c)
	by := ""
	if e != nil && e.Auth != nil {
		by = e.Auth.Email()
	}
	r.Load(map[string]any{
		collections.PrivacyKind:    kind,
		collections.PrivacySubject: subject,
		collections.PrivacyBy:      by,
		collections.PrivacySummary: summary,
	})
	if err := app.Save(r); err != nil {
		return fmt.Errorf("record %s request: %w", kind, err)
	}
	return nil
}

// affiliateRef is a field of a collection that names an affiliate: a relation field to
// affiliates (multi for a list of ids), or PocketBase's collectionRef/recordRef pair
// (_authOrigins, _externalAuths, _mfas, _otps). Enumerated from the schema, so collections
// added later are exported and swept without a change here.
type affiliateRef struct {
	collection *core.Collection
	field      string
	multi      bool
	system     bool
}

// affiliateRefs lists every field of the schema that names an affiliate, by collection name.
func affiliateRefs(app core.App) ([]affiliateRef, error) {
	affiliates, err := app.FindCachedCollectionByNameOrId(collections.Affiliates)
	if err != nil {
		return nil, err
	}
	all, err := app.FindAllCollections()
	if err != nil {
		return nil, fmt.Errorf("collections: %w", err)
	}
	var refs []affiliateRef
	for _, c := range all {
		if c.Id == affiliates.Id || c.IsView() {
			continue
		}
		if c.Fields.GetByName("collectionRef") != nil && c.Fields.GetByName("recordRef") != nil {
			refs = append(refs, affiliateRef{collection: c, field: "recordRef", system: true})
			continue
		}
		for _, f := range c.Fields {
			if rel, ok := f.(*core.RelationField); ok && rel.CollectionId == affiliates.Id {
				refs = append(refs, affiliateRef{collection: c, field: rel.Name, multi: rel.IsMultiple()})
			}
		}
	}
	return refs, nil
}

// where is the condition "this row names affiliate id".
func (r affiliateRef) where(affiliatesID, id string) dbx.Expression {
	switch {
	case r.system:
		return dbx.HashExp{"collectionRef": affiliatesID, "recordRef": id}
	case r.multi:
		return dbx.NewExp("EXISTS (SELECT 1 FROM json_each(CASE WHEN json_valid([["+r.field+"]]) THEN [["+r.field+"]] ELSE '[]' END) WHERE value = {:ref})",
			dbx.Params{"ref": id})
	default:
		return dbx.HashExp{r.field: id}
	}
}

// secretField reports whether a field holds a credential that no export carries: password
// hashes, token keys, signing secrets, hashes and idempotency keys.
func secretField(f core.Field) bool {
	if f.Type() == core.FieldTypePassword {
		return true
	}
	name := strings.ToLower(f.GetName())
	return name == "tokenkey" || strings.Contains(name, "secret") || strings.HasSuffix(name, "hash") ||
		name == "idempotency_key"
}
