// Command pbaffiliate is the affiliate-program manager: PocketBase plus pbaffiliate's hooks,
// schema and pages in one self-contained binary.
package main

import (
	"embed"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	"github.com/pocketbase/pocketbase"
	"github.com/pocketbase/pocketbase/apis"
	"github.com/pocketbase/pocketbase/cmd"
	"github.com/pocketbase/pocketbase/core"
	"github.com/pocketbase/pocketbase/plugins/migratecmd"

	"github.com/pbaffiliate/pbaffiliate/hooks"
	"github.com/pbaffiliate/pbaffiliate/hooks/scaleout"
)

// publicFiles are the back office (built from ui/), the portal and track.js, built into the binary so it needs
// no files beside it.
//
//go:embed all:pb_public
var publicFiles embed.FS

func main() {
	// `restore` runs before PocketBase, which would otherwise create and migrate a data dir
	// of its own at start (the command is also listed in the help through hooks.Register).
	if len(os.Args) > 1 && os.Args[1] == "restore" {
		restore := hooks.NewRestoreCommand()
		restore.SetArgs(os.Args[2:])
		if err := restore.Execute(); err != nil {
			os.Exit(1)
		}
		return
	}
	public, err := fs.Sub(publicFiles, "pb_public")
	if err != nil {
		log.Fatal(err)
	}
	// `edge` is a redirect node: no database, so it too runs before PocketBase.
	if len(os.Args) > 1 && os.Args[1] == "edge" {
		edge := scaleout.NewEdgeCommand(public)
		edge.SetArgs(os.Args[2:])
		if err := edge.Execute(); err != nil {
			os.Exit(1)
		}
		return
	}
	tuneGC()
	cfg := hooks.ConfigFromEnv()
	app := pocketbase.NewWithConfig(pocketbase.Config{DBConnect: hooks.DBConnect(cfg)})

	// Automigrate writes a migration for each dashboard schema change, but only during
	// development (`go run`): a deployed binary's schema comes from its own migrations.
	isGoRun := strings.HasPrefix(os.Args[0], os.TempDir()) || strings.Contains(filepath.ToSlash(os.Args[0]), "/go-build")
	migratecmd.MustRegister(app, app.RootCmd, migratecmd.Config{Automigrate: isGoRun})

	hooks.MustRegister(app, app.RootCmd, cfg)
	// --nats / --nats-embedded: feed redirect nodes (docs/scaling.md); without them, nothing.
	scaleout.Register(app, app.RootCmd)
	app.RootCmd.AddCommand(scaleout.NewEdgeCommand(public)) // listed in the help; main runs it above

	app.OnServe().BindFunc(func(se *core.ServeEvent) error {
		if !se.Router.HasRoute("GET", "/{path...}") {
			// Every page is served with hooks.ContentSecurityPolicy (hooks/security.go): no
			// inline script or style, this server only; the pages are built for it.
			se.Router.GET("/{path...}", apis.Static(public, false))
		}
		return se.Next()
	})

	// app.Start's own body, with serve wrapped: PocketBase drops a command's error (it only
	// prints it), so a serve that cannot start (its address taken, --nats unreachable) would
	// exit 0 and a supervisor restarting on failure would not restart it.
	serve := cmd.NewServeCommand(app, true)
	serve.RunE = hooks.Failing(app, serve.RunE)
	app.RootCmd.AddCommand(cmd.NewSuperuserCommand(app), serve)
	if err := app.Execute(); err != nil {
		log.Fatal(err)
	}
	// A failed `serve`, `import`, `demo` or `payouts run` exits 1.
	if hooks.CommandFailed(app) {
		os.Exit(1)
	}
}

// tuneGC trades memory for CPU where the operator left the Go runtime's defaults: the server's
// live heap is small (tens of MB), so collecting at 5× instead of 2× of it costs little memory and
// saves the hot paths (redirects, the commission engine) several percent of CPU. A soft memory
// limit keeps the larger target from growing without bound. GOGC / GOMEMLIMIT still win.
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(hooks.DefaultGCPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(hooks.DefaultMemoryLimit)
	}
}
