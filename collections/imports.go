package collections

// Imports from other affiliate platforms (`pbaffiliate import`, hooks/import.go).

// CodeAliases maps the legacy codes an import brought (Rewardful's ?via= token, FirstPromoter's
// ref_id, Tapfiliate's referral code or tap_a id) to the affiliate they belong to, so old links
// keep crediting them: /r/{code} and POST /api/pba/clicks consult it after link and affiliate
// codes. Every imported legacy code has a row, also the ones kept as the affiliate's own code:
// the rows are also what a later import of the same platform matches an affiliate by.
const CodeAliases = "code_aliases"

// code_aliases fields (besides code and affiliate).
const (
	// AliasSource is the platform the code came from: rewardful, firstpromoter, tapfiliate, csv.
	AliasSource = "source"
)

// AliasPattern is what a legacy code may look like once lowercased: wider than CodePattern
// (other platforms allow underscores, dots, one- and two-letter codes), still URL-safe.
const AliasPattern = `^[a-z0-9][a-z0-9_.~-]{0,63}$`

// ImportRefPrefix starts the ref of an opening-balance adjustment an import created:
// import:<platform>:<email>. One per affiliate and platform (hooks/import.go).
const ImportRefPrefix = "import:"
