package worker

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/riverqueue/river"
	"github.com/rs/zerolog"

	"github.com/molecule-ai/provision-worker/internal/obs"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/jobs"
)

// errEnvHookCanceled is jobs.ErrEnvHook for a hook cut off by shutdown: it
// still wraps context.Canceled, so River requeues the job without
// spending an attempt (invariant "no transaction across a CP call",
// docs/design.md), and still carries no hook text.
var errEnvHookCanceled = fmt.Errorf("%w: %w", jobs.ErrEnvHook, context.Canceled)

// errEnvHookNoTime is jobs.ErrEnvHook for a job with too little of its timeout
// left to ask the hook and still make the CP call: it is retried like any
// hook failure, never read as a CP failure.
var errEnvHookNoTime = fmt.Errorf("%w: too little of the job's timeout left for the hook and the CP call", jobs.ErrEnvHook)

// envHookMargin is kept back beside the CP call's own bound, for the
// record that follows it.
const envHookMargin = 200 * time.Millisecond

// envHookContext bounds the env hook so the CP call it feeds keeps its
// whole timeout: the job's deadline less the CP client's timeout and a
// margin. A slow but working hook (a KMS having a bad day) used to eat the
// job's time, the CP call then hit the job's deadline, and the attempt
// counted as a CP failure: on the last one, a failed workspace for the
// host's slowness. Cut off here it is an env hook failure instead, which
// never fails the workspace. ok is false when no time is left for it.
func (d *Deps) envHookContext(ctx context.Context) (context.Context, context.CancelFunc, bool) {
	deadline, has := ctx.Deadline()
	if !has {
		return ctx, func() {}, true
	}
	cpBudget := d.cpTimeout
	if cpBudget <= 0 {
		cpBudget = cpTimeoutOf(d.CP)
	}
	hookDeadline := deadline.Add(-cpBudget - envHookMargin)
	if !time.Now().Before(hookDeadline) {
		return ctx, func() {}, false
	}
	hctx, cancel := context.WithDeadline(ctx, hookDeadline)
	return hctx, cancel, true
}

// hostEnv calls the env hook. Its error, and a panic's value (River would
// otherwise record the panic text in the job's errors), become jobs.ErrEnvHook.
func (d *Deps) hostEnv(ctx context.Context, workspaceID string) (env map[string]string, err error) {
	defer func() {
		if recover() != nil {
			env, err = nil, jobs.ErrEnvHook
		}
	}()
	env, err = d.Env(ctx, workspaceID)
	switch {
	case err == nil:
		if env == nil {
			env = map[string]string{}
		}
		return env, nil
	case errors.Is(err, context.Canceled) || errors.Is(ctx.Err(), context.Canceled):
		return nil, errEnvHookCanceled
	}
	return nil, jobs.ErrEnvHook
}

// envFailed decides what a failed env hook means. It is retried like a
// failed CP call (an attempt spent, with the provision backoff), but it
// never marks the workspace failed, not even on the last attempt: the
// host could not produce the env (a key service down, a secret being
// rotated), which says nothing about the workspace, and marking it failed
// would send the host's user a "provisioning failed" for the host's own
// outage. The last attempt snoozes instead (it gives the attempt back,
// under the same MaxSnoozes bound as Retry-After: invariant "no silent
// stop", docs/design.md), so the
// job keeps trying every SnoozeCap for MaxSnoozes more tries. When that
// budget is spent too, the error is returned and River discards the job
// loudly (job.discarded, River UI), leaving the row provisioning. Past
// PROVISIONING_DEADLINE the orphan sweep re-runs that same job (one more
// attempt per sweep, sweep.ClassEnvHookDiscarded, until
// sweep.EnvHookRerunLimit) instead of marking the row failed as it does
// any other stuck provisioning row; an operator can re-run it sooner in
// River UI once the hook works.
func (w *ProvisionWorker) envFailed(ctx context.Context, job *river.Job[jobs.ProvisionArgs], ws store.Workspace, err error) error {
	if errors.Is(err, context.Canceled) {
		return err
	}
	w.deps.Metrics.HookFailed(obs.HookEnv)
	last := job.Attempt >= job.MaxAttempts
	ev := jobEvent(job.JobRow, ws.ID, obs.EvEnvHookFailed, map[string]any{
		"generation": ws.Generation, "error": jobs.ErrEnvHook.Error(), "last_attempt": last})
	if nerr := w.deps.note(ctx, zerolog.WarnLevel, ev); nerr != nil {
		return errors.Join(err, nerr)
	}
	if !last {
		return err
	}
	return w.deps.waitOrFail(job.JobRow, w.deps.Settings.ProvisionBackoffCap, err)
}

// noteStoredEnvIgnored warns, once per job, that env is stored beside a
// row although the hook supplies it: the stored values are neither read
// nor sent (the hook wins), and not deleted either, so a host that turns
// the hook off again provisions with what it stored. The event carries no
// key and no value. Such env comes from a request that passed Env (or
// from before the hook was set); the README's adoption notes say to stop
// passing it and how to clear workspace_env.
func (w *ProvisionWorker) noteStoredEnvIgnored(ctx context.Context, job *river.Job[jobs.ProvisionArgs], ws store.Workspace) error {
	if job.Attempt > 1 || len(job.AttemptedBy) > 1 {
		return nil
	}
	return w.deps.note(ctx, zerolog.WarnLevel, jobEvent(job.JobRow, ws.ID, obs.EvStoredEnvIgnored,
		map[string]any{"generation": ws.Generation}))
}

// outcome tells the host's row o inside tx, the transaction that changes
// the worker's row (see OutcomeFunc). A failed Outcome's Message is always
// GenericFailure, whatever the caller put there. The hook's error is
// logged and returned wrapped in ErrOutcomeHook; the caller's transaction
// then rolls back. It never goes on the timeline.
func (d *Deps) outcome(ctx context.Context, tx pgx.Tx, o jobs.Outcome) error {
	if d.OnOutcome == nil {
		return nil
	}
	o.Message = ""
	if o.Status == jobs.StatusFailed {
		o.Message = jobs.GenericFailure
	}
	err := callOutcome(ctx, d.OnOutcome, pgxExecer{tx: tx}, o)
	if err == nil {
		return nil
	}
	d.Metrics.HookFailed(obs.HookOutcome)
	err = fmt.Errorf("%w (workspace %s, status %s): %w", jobs.ErrOutcomeHook, o.WorkspaceID, o.Status, err)
	d.Log.Warn().Str("evt", obs.EvOutcomeHookFail).Str("workspace_id", o.WorkspaceID).Str("status", string(o.Status)).
		Err(err).Msg("outcome hook failed: the change is rolled back and the job retries")
	return err
}

// errOutcomePanic replaces a panicking OutcomeFunc's value.
var errOutcomePanic = errors.New("outcome hook panicked")

func callOutcome(ctx context.Context, fn jobs.OutcomeFunc, tx jobs.Execer, o jobs.Outcome) (err error) {
	defer func() {
		if recover() != nil {
			err = errOutcomePanic
		}
	}()
	return fn(ctx, tx, o)
}

// pgxExecer is the worker's pgx.Tx as an Execer, so the host's hook can be
// the same function its handlers call with their *sql.Tx.
type pgxExecer struct{ tx pgx.Tx }

// ExecContext runs query in the worker's transaction. Placeholders are
// Postgres's ($1, $2), as with lib/pq.
func (e pgxExecer) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	tag, err := e.tx.Exec(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return tagResult(tag), nil
}

// tagResult is a pgconn.CommandTag as an sql.Result.
type tagResult pgconn.CommandTag

// errNoLastInsertID is what lib/pq answers too: Postgres has no such id.
var errNoLastInsertID = errors.New("jobs: LastInsertId is not supported by Postgres; use RETURNING")

func (r tagResult) LastInsertId() (int64, error) { return 0, errNoLastInsertID }

func (r tagResult) RowsAffected() (int64, error) { return pgconn.CommandTag(r).RowsAffected(), nil }
