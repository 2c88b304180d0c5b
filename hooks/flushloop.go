package hooks

import "time"

// flushLoop calls flush every interval from one goroutine, and once more on stop, so what a
// component aggregates in memory (live deltas, door counters) is never left behind.
type flushLoop struct{ quit, done chan struct{} }

func (l *flushLoop) start(every time.Duration, flush func()) {
	l.quit, l.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(l.done)
		ticker := time.NewTicker(every)
		defer ticker.Stop()
		for {
			select {
			case <-ticker.C:
				flush()
			case <-l.quit:
				flush()
				return
			}
		}
	}()
}

// stop returns once the last flush is done; a loop never started returns at once.
func (l *flushLoop) stop() {
	if l.quit == nil {
		return
	}
	close(l.quit)
	<-l.done
	l.quit = nil
}
