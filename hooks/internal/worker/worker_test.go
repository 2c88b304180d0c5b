package worker

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// waitFor fails the test unless cond becomes true within a second.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// passes is a job whose run is one Exclusive session counting its passes.
type passes struct {
	w *Worker
	n atomic.Int32
}

func newPasses() *passes {
	p := &passes{}
	p.w = New(func(ctx context.Context) error {
		return p.w.Exclusive(ctx, func(next func() bool) error {
			for next() {
				p.n.Add(1)
			}
			return nil
		})
	}, nil)
	return p
}

// Signal returns at once however often it is called, started or not.
func TestSignalNeverBlocks(t *testing.T) {
	w := New(func(context.Context) error { select {} }, nil) // a run that never ends
	done := make(chan struct{})
	go func() {
		for range 1000 {
			w.Signal()
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("Signal blocked")
	}
}

// A signal runs the job while serving; Start wakes it once by itself.
func TestSignalRunsWhileServing(t *testing.T) {
	p := newPasses()
	p.w.Start()
	defer p.w.Stop()
	waitFor(t, "the run of Start", func() bool { return p.n.Load() == 1 })
	p.w.Signal()
	waitFor(t, "the signaled run", func() bool { return p.n.Load() == 2 })
}

// Start and Stop may be called twice; Stop without Start does nothing; Start after Stop
// serves again.
func TestStartStopIdempotent(t *testing.T) {
	p := newPasses()
	p.w.Stop() // never started: no-op, Tick still runs (CLI)
	if _, ok := p.w.RunContext(); !ok {
		t.Fatal("Stop without Start disabled runs")
	}
	p.w.Start()
	p.w.Start()
	waitFor(t, "the run of Start", func() bool { return p.n.Load() >= 1 })
	p.w.Stop()
	p.w.Stop()
	if _, ok := p.w.RunContext(); ok {
		t.Fatal("a run context after Stop")
	}
	before := p.n.Load()
	p.w.Start()
	defer p.w.Stop()
	if ctx, ok := p.w.RunContext(); !ok || ctx.Err() != nil {
		t.Fatal("no live context after a restart")
	}
	waitFor(t, "the run of the second Start", func() bool { return p.n.Load() > before })
}

// RunContext: background before Start, the serving context (canceled by Stop) while
// serving, none after Stop; Tick after Stop runs nothing.
func TestRunContext(t *testing.T) {
	p := newPasses()
	ctx, ok := p.w.RunContext()
	if !ok || ctx != context.Background() {
		t.Fatalf("before Start: %v %v, want the background context", ctx, ok)
	}
	p.w.Tick()
	if p.n.Load() != 1 {
		t.Fatalf("Tick before Start ran %d passes", p.n.Load())
	}

	p.w.Start()
	serving, ok := p.w.RunContext()
	if !ok || serving == context.Background() || serving.Err() != nil {
		t.Fatalf("while serving: %v %v", serving, ok)
	}
	p.w.Stop()
	if serving.Err() == nil {
		t.Fatal("Stop did not cancel the serving context")
	}
	if _, ok := p.w.RunContext(); ok {
		t.Fatal("a run context after Stop")
	}
	n := p.n.Load()
	p.w.Tick()
	if p.n.Load() != n {
		t.Fatal("Tick ran after Stop")
	}
}

// Stop returns only after an in-flight run ended, whether the worker or a Tick started it.
func TestStopWaitsForInFlightRun(t *testing.T) {
	for _, via := range []string{"worker", "tick"} {
		t.Run(via, func(t *testing.T) {
			var block, started, finished atomic.Bool
			var w *Worker
			w = New(func(ctx context.Context) error {
				return w.Exclusive(ctx, func(next func() bool) error {
					for next() {
						if !block.Load() {
							continue
						}
						started.Store(true)
						<-ctx.Done()
						time.Sleep(20 * time.Millisecond) // cleanup after cancel, e.g. releasing claims
						finished.Store(true)
					}
					return nil
				})
			}, nil)
			if via == "worker" {
				block.Store(true)
				w.Start()
			} else {
				var ran atomic.Bool
				w.Start() // its own run passes at once
				waitFor(t, "the idle worker", func() bool {
					if w.running.TryLock() {
						defer w.running.Unlock()
						ran.Store(len(w.kick) == 0)
					}
					return ran.Load()
				})
				block.Store(true)
				go w.Tick()
			}
			waitFor(t, "the run", started.Load)
			w.Stop()
			if !finished.Load() {
				t.Fatal("Stop returned before the run ended")
			}
		})
	}
}

// A run arriving while another is busy returns at once and the busy one looks once more:
// any number of such arrivals cost one extra pass.
func TestExclusiveCoalescesIntoOneMorePass(t *testing.T) {
	w := New(nil, nil)
	entered, release := make(chan struct{}), make(chan struct{})
	var passes atomic.Int32
	first := true
	result := make(chan error, 1)
	go func() {
		result <- w.Exclusive(context.Background(), func(next func() bool) error {
			for next() {
				passes.Add(1)
				if first {
					first = false
					close(entered)
					<-release
				}
			}
			return nil
		})
	}()
	<-entered
	for range 5 {
		called := false
		if err := w.Exclusive(context.Background(), func(func() bool) error { called = true; return nil }); err != nil || called {
			t.Fatalf("a run while another is busy: err %v, ran %v", err, called)
		}
	}
	close(release)
	if err := <-result; err != nil {
		t.Fatal(err)
	}
	if passes.Load() != 2 {
		t.Fatalf("%d passes, want 2 (the first and one for all five arrivals)", passes.Load())
	}
}

// A request that arrives after the session's last next (just before it returns) is not lost:
// Exclusive runs the session again. Again inside the session asks for another pass.
func TestExclusiveLooksAgainAfterLateRequest(t *testing.T) {
	w := New(nil, nil)
	sessions, passes := 0, 0
	err := w.Exclusive(context.Background(), func(next func() bool) error {
		sessions++
		for next() {
			passes++
			if passes == 1 {
				w.Again() // e.g. a full batch: more may be due
			}
		}
		if sessions == 1 {
			w.Again() // a caller arriving between the last next and the unlock
		}
		return nil
	})
	if err != nil || sessions != 2 || passes != 3 {
		t.Fatalf("err %v, %d sessions, %d passes; want 2 sessions, 3 passes", err, sessions, passes)
	}
}

// ErrEnd ends the run without another look and is not an error; other errors end it and are
// returned; an ended context ends it.
func TestExclusiveEnds(t *testing.T) {
	w := New(nil, nil)
	sessions := 0
	err := w.Exclusive(context.Background(), func(func() bool) error {
		sessions++
		w.Again()
		return ErrEnd
	})
	if err != nil || sessions != 1 {
		t.Fatalf("ErrEnd: err %v, %d sessions", err, sessions)
	}
	boom := errors.New("boom")
	if err := w.Exclusive(context.Background(), func(func() bool) error { w.Again(); return boom }); !errors.Is(err, boom) {
		t.Fatalf("error: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	sessions = 0
	err = w.Exclusive(ctx, func(next func() bool) error {
		sessions++
		if next() {
			t.Error("next is true after the context ended")
		}
		w.Again()
		return nil
	})
	if err != nil || sessions != 1 {
		t.Fatalf("ended context: err %v, %d sessions", err, sessions)
	}
	// The lock is free again after each of these; a session that never calls next ends the
	// run instead of being run again and again.
	sessions = 0
	err = w.Exclusive(context.Background(), func(func() bool) error {
		sessions++
		w.Again()
		return nil
	})
	if err != nil || sessions != 1 {
		t.Fatalf("the session lock was not released, or a session without next ran %d times", sessions)
	}
}

// However many goroutines run at once, at most one session is active.
func TestExclusiveNeverOverlaps(t *testing.T) {
	w := New(nil, nil)
	var active, most, total atomic.Int32
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			_ = w.Exclusive(context.Background(), func(next func() bool) error {
				for next() {
					n := active.Add(1)
					for {
						m := most.Load()
						if n <= m || most.CompareAndSwap(m, n) {
							break
						}
					}
					total.Add(1)
					time.Sleep(time.Millisecond)
					active.Add(-1)
				}
				return nil
			})
		})
	}
	wg.Wait()
	if most.Load() != 1 || total.Load() < 1 {
		t.Fatalf("at most %d sessions at once (want 1), %d passes", most.Load(), total.Load())
	}
}

// Errors of runs nobody waits for go to onErr, unless the run's context ended (shutdown).
func TestRunErrorsReported(t *testing.T) {
	var mu sync.Mutex
	var got []error
	boom := errors.New("boom")
	w := New(func(ctx context.Context) error {
		if ctx.Err() != nil {
			return errors.New("canceled")
		}
		return boom
	}, func(err error) { mu.Lock(); got = append(got, err); mu.Unlock() })
	w.Tick()
	mu.Lock()
	if len(got) != 1 || !errors.Is(got[0], boom) {
		t.Fatalf("reported %v", got)
	}
	mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	w.runLogged(ctx)
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 {
		t.Fatalf("an error of a canceled run was reported: %v", got)
	}
}
