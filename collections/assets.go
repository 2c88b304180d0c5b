package collections

// Assets is promotional material of a program (migration 1795480600_assets): banners, texts,
// emails and social posts whose body is a template rendered for each affiliate
// (hooks/assets.go). Superusers only through the records API; affiliates read them rendered
// through GET /api/pba/assets.
const Assets = "assets"

// Asset fields (besides program, title and active).
const (
	AssetTiers       = "tiers"       // relation to tiers, several; empty: every tier and no tier
	AssetKind        = "kind"        // one of AssetKinds
	AssetTitle       = "title"       // also the banner's alt text
	AssetFile        = "file"        // the image (a banner's), with thumbs
	AssetBody        = "body"        // template: the mail templates' language and variable names
	AssetDestination = "destination" // optional deep link on the program's allowed domains
	AssetActive      = "active"
	AssetOrder       = "order"
	AssetWidth       = "width"  // pixels of the image, read from the file when it is uploaded
	AssetHeight      = "height" // likewise
)

// Asset kinds.
const (
	AssetBanner = "banner"
	AssetText   = "text"
	AssetEmail  = "email"
	AssetSocial = "social"
)

// AssetThumb is the thumb size the API names as an asset's "thumb" (also in the migration).
const AssetThumb = "300x0"
