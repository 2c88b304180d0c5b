# pbaffiliate — see README.md. Every target works on a fresh machine with Go installed.
# Build and test with Go 1.27.3: Go 1.26.8's standard library has known vulnerabilities
# (net/http, crypto/tls, crypto/x509, html/template, net/textproto) fixed in 1.27.3. The go
# command fetches that toolchain from the module proxy on first use; override it with
# `make GOTOOLCHAIN=…` or the environment (README.md, "Go toolchain").
export GOTOOLCHAIN ?= go1.27.3
# ...with encoding/json's v1 implementation: Go 1.27 makes v2 the default, under which PocketBase
# v0.39's Collection JSON methods recurse until the stack overflows (every collection save, a
# fatal error); collections/jsonv2_guard.go refuses to compile a build without this.
export GOEXPERIMENT ?= nojsonv2
# chromedp's protocol types (browser tests) pick encoding/json/v2 on Go 1.27 unless told to use
# their compatibility build; json/v2 does not exist under nojsonv2.
export GOFLAGS ?= -tags=cdproto_jsoncompat
GO             ?= go
# gofmt of the toolchain above, not whichever gofmt is first on PATH
GOFMT          ?= $(shell GOTOOLCHAIN=$(GOTOOLCHAIN) $(GO) env GOROOT)/bin/gofmt
DATA           ?= ./pb_data
HTTP           ?= 127.0.0.1:8090
ADMIN_EMAIL    ?= admin@example.com
ADMIN_PASSWORD ?= pbaffiliate-admin

.PHONY: run demo build test bench bench-edge fuzz fmt fmt-check lint clean ui ui-check soak drill

## run: start the server on an embedded SQLite in $(DATA), with a superuser ready to log in
run:
	@$(GO) run . superuser upsert $(ADMIN_EMAIL) $(ADMIN_PASSWORD) --dir $(DATA) --dev=false >/dev/null
	@echo "pbaffiliate: back office http://$(HTTP)/admin/  portal http://$(HTTP)/portal/  dashboard http://$(HTTP)/_/"
	@echo "pbaffiliate: superuser $(ADMIN_EMAIL) / $(ADMIN_PASSWORD)"
	@echo "pbaffiliate: demo data: make demo (affiliates log in to the portal as ada-lovelace@demo.pbaffiliate.test / demo-password-1)"
	@# --dev=false: `go run` would otherwise start PocketBase in dev mode, which logs every SQL statement.
	$(GO) run . serve --http $(HTTP) --dir $(DATA) --dev=false

## demo: fill $(DATA) with demo affiliates and 90 days of history (safe to run twice)
demo:
	$(GO) run . demo --dir $(DATA) --dev=false

## build: the single self-contained binary
build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/pbaffiliate .

## test: vet, then at once: the whole test suite under the race detector (the hooks package split
## in two processes, the scale-out's cluster drill in its own) and the long ledger property test
## in full (10,000 steps; under -race it runs 400); .ci/test
test:
	$(GO) vet ./...
	GO=$(GO) .ci/test

## soak: faults under load (internal/soak): the real binary takes clicks, sales, refunds, status
## updates and payout runs while it is SIGKILLed and restarted twice, then the ledger, the rollups,
## exactly-once clicks and sales and no payout paid twice are checked. CI runs SOAK=60s.
SOAK ?= 3m
soak:
	SOAK=$(SOAK) $(GO) test -count=1 -timeout 30m -run '^TestSoak$$' -v ./internal/soak

## drill: the restore drill alone (replicate under load, lose the machine, restore, check; also
## part of `make test`), with its measured replication lag (docs/operations.md)
drill:
	$(GO) test -count=1 -timeout 10m -run '^TestRestoreDrill$$' -v .

## ui: rebuild the web app (ui/, Svelte + Vite) into pb_public from the lockfile; needs Node 20+
## and npm. The build is committed, so `go build` and `make run` need no Node.
ui:
	cd ui && npm ci --no-audit --no-fund && npm test
	rm -rf pb_public/admin pb_public/portal pb_public/ui
	cd ui && npm run build

## ui-check: rebuild the web app and fail when the build differs from the committed one (CI)
ui-check: ui
	@changed=$$(git status --porcelain -- pb_public); \
	if [ -n "$$changed" ]; then echo "ui-check: the committed build in pb_public differs from \`make ui\`:"; echo "$$changed"; git --no-pager diff --stat -- pb_public; exit 1; fi

## bench: Go benchmarks of every package, then the HTTP load test of the redirector with wrk
bench:
	@command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
	$(GO) test -run='^$$' -bench=. -benchmem ./...
	$(GO) run ./internal/loadtest

## bench-edge: the scale-out's load test with wrk (internal/loadtest/edge.go): two `pbaffiliate
## edge` nodes and a primary running the embedded NATS server, on this machine, against the
## single process in the same run — redirects/s and server CPU per redirect (docs/scaling.md)
bench-edge:
	@command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
	$(GO) run ./internal/loadtest -edge

## fuzz: a short run of every fuzz target (CI runs it; go longer with FUZZTIME=5m). A count, not a
## duration, by default: a duration can end mid-execution and report "context deadline exceeded".
FUZZTIME ?= 500000x
## Minimizing each new interesting input may take up to a minute by default (the run shows
## "execs: … (0/sec)" meanwhile); CI's short run keeps new inputs as found.
FUZZMINTIME ?= 10000x
fuzz:
	$(GO) test -run='^$$' -fuzz='^FuzzParseDecimal$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=$(FUZZMINTIME) ./hooks/internal/money
	$(GO) test -run='^$$' -fuzz='^FuzzRoundTrip$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=$(FUZZMINTIME) ./hooks/internal/money
	$(GO) test -run='^$$' -fuzz='^FuzzParse$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=$(FUZZMINTIME) ./hooks/internal/postback

## fmt: format the code
fmt:
	$(GOFMT) -w $$(git ls-files '*.go')

## lint: formatting and vet, as CI checks them
lint: fmt-check
	$(GO) vet ./...

## fmt-check: fail when a Go file is not gofmt-formatted (CI; `make test` runs vet itself)
fmt-check:
	@unformatted=$$($(GOFMT) -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi

clean:
	rm -rf bin
