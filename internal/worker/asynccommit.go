package worker

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
)

// errAsyncCompletion is what a job whose completing transaction committed
// with synchronous_commit = off (COMPLETION_SYNCHRONOUS_COMMIT=off)
// returns to River instead of nil. River's own completer then asks for a
// retry, and its statement changes only a job still running: after a
// commit that held, the job is completed and the request is a no-op
// (River reports the job completed; the committed completion takes
// precedence). After a commit the server acknowledged and then lost in
// a crash, the job is running again under the same attempt, and a nil
// would have let River's completer, retrying across the restart, mark it
// completed without the row change that was lost with it: the workspace
// stuck in provisioning or stopping for good (the chaos test
// TestDBFault_AsyncCompletionCommitSurvivesPostgresCrash found this). With
// the error, the job is retried instead, and the retry adopts or confirms.
var errAsyncCompletion = errors.New("worker: completion committed with synchronous_commit = off; " +
	"this error is kept only when the server lost that commit, and the job is retried")

// asyncMark is set, in a job's context, when its completing transaction
// committed asynchronously.
type asyncMark struct{ committed atomic.Bool }

type asyncMarkKey struct{}

// markAsyncCompletion records in ctx that the job's completion committed
// asynchronously.
func markAsyncCompletion(ctx context.Context) {
	if m, ok := ctx.Value(asyncMarkKey{}).(*asyncMark); ok {
		m.committed.Store(true)
	}
}

// asyncCompletion turns a nil from a job whose completion committed
// asynchronously into errAsyncCompletion. It is the outermost middleware,
// so tracing (internal/jobtrace) still sees the job's own result.
type asyncCompletion struct{ river.MiddlewareDefaults }

func (*asyncCompletion) Work(ctx context.Context, _ *rivertype.JobRow, doInner func(context.Context) error) error {
	m := &asyncMark{}
	err := doInner(context.WithValue(ctx, asyncMarkKey{}, m))
	if err == nil && m.committed.Load() {
		return errAsyncCompletion
	}
	return err
}

// middleware is the worker client's River middleware.
func middleware(deps *Deps, traced []rivertype.Middleware) []rivertype.Middleware {
	if !deps.Settings.AsyncCompletionCommit() {
		return traced
	}
	return append([]rivertype.Middleware{&asyncCompletion{}}, traced...)
}
