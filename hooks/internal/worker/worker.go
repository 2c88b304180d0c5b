// Package worker is the lifecycle of a background job that drains an outbox: a table of
// rows (mails, webhook notifications) written inside their transaction and sent later,
// outside any transaction.
//
// A Worker is woken three ways: by Signal (a row was just committed), by Tick (a cron job, so
// retries and missed signals are picked up even without a server), and once by Start (what
// became due while the server was down). Its run function decides what "a run" is and calls
// Exclusive, so runs never overlap in one process and a wake-up that arrives while a run is
// busy is never lost: the busy run looks once more instead.
//
//	w := worker.New(o.run, func(err error) { log.Error("outbox", "error", err) })
//	func (o *outbox) run(ctx context.Context) error {
//		return o.w.Exclusive(ctx, func(next func() bool) error {
//			for next() {
//				if err := o.sendDue(ctx); err != nil {
//					return err
//				}
//			}
//			return nil
//		})
//	}
//
// The background goroutine only exists between Start and Stop (a serving app); CLI commands
// run the cron job with a background context. Stop cancels in-flight runs and waits for
// them, so nothing touches the database after it closes, and no run starts after it.
package worker

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
)

// ErrEnd is returned by an Exclusive session to end the run at once, even when another
// pass was asked for meanwhile: someone else (another process holding the work's lease)
// does the work and looks again itself. Exclusive returns nil for it.
var ErrEnd = errors.New("worker: run ends")

// Worker runs one job in the background of a server. The zero value is not usable; use New.
type Worker struct {
	run   func(ctx context.Context) error
	onErr func(error)

	// running makes sessions exclusive within this process; again asks the running session
	// to look once more (a wake-up arrived while it was busy).
	running sync.Mutex
	again   atomic.Bool
	// kick wakes the background goroutine; capacity 1 coalesces bursts.
	kick chan struct{}

	// mu guards the lifecycle: ctx is the serving context, stopped is set by Stop.
	mu      sync.Mutex
	ctx     context.Context
	cancel  context.CancelFunc
	done    chan struct{}
	stopped bool
}

// New returns a stopped worker that calls run on every wake-up. Errors of runs nobody waits
// for (background, Tick) go to onErr, except those of a run whose context ended (shutdown).
func New(run func(ctx context.Context) error, onErr func(error)) *Worker {
	return &Worker{run: run, onErr: onErr, kick: make(chan struct{}, 1)}
}

// Signal wakes the background goroutine without ever blocking the caller: a wake-up already
// pending covers this one. Before Start (or after Stop) it is kept for the next Start.
func (w *Worker) Signal() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// Start runs the background goroutine until Stop, and wakes it once for what became due
// while nothing ran. A second Start is a no-op.
func (w *Worker) Start() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cancel != nil {
		return
	}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	w.done = make(chan struct{})
	w.stopped = false
	go w.work(w.ctx, w.done)
	w.Signal()
}

// Stop cancels the serving context and waits for the background goroutine and for any
// session of Exclusive (a Tick run) to end; afterwards Tick runs nothing. Stop without Start
// (or a second Stop) is a no-op.
func (w *Worker) Stop() {
	w.mu.Lock()
	if w.cancel == nil {
		w.mu.Unlock()
		return
	}
	w.cancel()
	done := w.done
	w.cancel, w.ctx, w.done, w.stopped = nil, nil, nil, true
	w.mu.Unlock()
	<-done
	w.running.Lock()
	//lint:ignore SA2001 the empty critical section waits for a session of Exclusive to end
	w.running.Unlock()
}

// RunContext is the context of a run not started by the worker itself: the serving context
// between Start and Stop (canceled by Stop), a background one when the app never served (a
// CLI command), and none (false) after Stop.
func (w *Worker) RunContext() (context.Context, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.stopped:
		return nil, false
	case w.ctx != nil:
		return w.ctx, true
	default:
		return context.Background(), true
	}
}

// Tick runs the job once with RunContext, for a caller with nowhere to return an error to
// (a cron job); after Stop it does nothing.
func (w *Worker) Tick() {
	if ctx, ok := w.RunContext(); ok {
		w.runLogged(ctx)
	}
}

// work runs the job whenever it is signaled, until ctx ends.
func (w *Worker) work(ctx context.Context, done chan struct{}) {
	defer close(done)
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.kick:
			w.runLogged(ctx)
		}
	}
}

// runLogged runs the job and hands its error to onErr unless ctx ended.
func (w *Worker) runLogged(ctx context.Context) {
	if err := w.run(ctx); err != nil && ctx.Err() == nil && w.onErr != nil {
		w.onErr(err)
	}
}

// Again asks the running session for one more pass (its next call of next reports true),
// e.g. because its last batch was full and more may be due.
func (w *Worker) Again() {
	w.again.Store(true)
}

// Exclusive runs session unless another session of w is running in this process; then it
// asks that one to look again and returns nil at once (the running one picks up whatever
// this caller came for). session calls next before each pass: next reports, and clears,
// whether a pass is asked for, and is false once ctx ended. The first call is always true.
//
// When session returns nil and a pass was asked for after its last next (in the moment
// before the session ended), Exclusive runs session again. An error, ErrEnd (returned as
// nil), a session that never called next, or the end of ctx ends the run.
func (w *Worker) Exclusive(ctx context.Context, session func(next func() bool) error) error {
	asked := false
	next := func() bool {
		asked = true
		return ctx.Err() == nil && w.again.Swap(false)
	}
	w.again.Store(true)
	for w.again.Load() {
		if !w.running.TryLock() {
			return nil // the holder sees again and loops, also after its last pass
		}
		asked = false
		err := session(next)
		w.running.Unlock()
		if errors.Is(err, ErrEnd) || err == nil && !asked {
			return nil // a session that never asked would be run again and again
		}
		if err != nil || ctx.Err() != nil {
			return err
		}
	}
	return nil
}
