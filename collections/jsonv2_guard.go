//go:build goexperiment.jsonv2

package collections

// Go 1.27 builds encoding/json on its v2 implementation by default, under which PocketBase
// v0.39's Collection UnmarshalJSON (it unmarshals into an alias of its own pointer type)
// recurses until the stack overflows: every collection save would be a fatal error, the
// dashboard's included. Refuse to compile such a binary rather than ship it; the Makefile and
// .ci/run build with GOEXPERIMENT=nojsonv2 (README.md, "Go toolchain").
const _ = pbaffiliate_needs_GOEXPERIMENT_nojsonv2
