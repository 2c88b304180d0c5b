package hooks

import (
	"fmt"
	"testing"
	"time"

	"github.com/pbaffiliate/pbaffiliate/hooks/store"
	"github.com/pocketbase/pocketbase/core"

	"github.com/pbaffiliate/pbaffiliate/internal/pbatest"
)

// BenchmarkWriteClicks measures one group commit of 64 clicks (the batch 64 waiting
// connections make): the writer's share of every redirect.
func BenchmarkWriteClicks(b *testing.B) {
	app := pbatest.TempApp(b)
	const batch = 64
	// The writer's own path: statements prepared once on the writer connection, bound per batch.
	w := newClickWriter(app, clickWriterConfig{}, nil)
	if err := w.prepareStmts(); err != nil {
		b.Fatal(err)
	}
	defer w.closeStmts()
	rows := make([]clickRow, batch)
	var ids store.OrderedIDs // one instant per id, as the writer hands them out
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		now := time.Now().UTC()
		for j := range rows {
			rows[j] = clickRow{ID: ids.Next(now), LinkID: "link00000000001", AffiliateID: fmt.Sprintf("aff%012d", j%8),
				ProgramID: "prog00000000001", Visitor: ids.Next(now), NewVisitor: true, IPHash: "0123456789abcdef0123456789abcdef",
				UserAgent: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36", Created: now}
		}
		err := app.RunInTransaction(func(tx core.App) error {
			ins, err := w.newInserter(tx)
			if err != nil {
				return err
			}
			return ins.write(rows)
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/click")
}
