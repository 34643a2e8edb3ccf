// Package sweep finds what retries cannot: instances the CP launched whose
// answer never reached us, duplicates from a CP that ignored the
// idempotency key, rows marked stopped while their instance runs, and
// stops whose job died. It is modelled on Karpenter's instance garbage
// collector: list the cloud first, then the records, and act only past a
// grace period; both sides are read in pages so memory stays flat.
//
// Package jobs runs it as the orphan_sweep River job; the job kinds it
// enqueues are reached through the Jobs interface, so this package does
// not import jobs.
package sweep

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/molecule-ai/provision-worker/internal/cp"
	"github.com/molecule-ai/provision-worker/internal/obs"
	"github.com/molecule-ai/provision-worker/internal/store"
)

// Jobs inserts and re-drives the jobs the sweep hands work to, inside the
// caller's transaction (the row change and its job commit together).
type Jobs interface {
	InsertTerminate(ctx context.Context, tx pgx.Tx, workspaceID string) (int64, error)
	// InsertInstanceTerminate reports dup when a live job for the same
	// instance already exists (River's unique insert skipped it).
	InsertInstanceTerminate(ctx context.Context, tx pgx.Tx, workspaceID, instanceID string) (id int64, dup bool, err error)
	// Retry makes a discarded or cancelled job available again
	// (JobRetryTx): the same job, not a twin, so an operator's retry of it
	// in River UI is not refused as a duplicate.
	Retry(ctx context.Context, tx pgx.Tx, jobID int64) error
}

// Deps is what a sweep needs.
type Deps struct {
	Pool    *pgxpool.Pool
	Store   *store.Store // the schema the sweep reads and writes
	CP      cp.API
	Jobs    Jobs // may be nil on a dry run
	Log     zerolog.Logger
	Metrics *obs.Metrics // nil: no metrics
	// OnFailed, when set, runs in the transaction that marks a row stuck
	// in provisioning failed (the host's outcome hook, which package jobs
	// wraps: this package does not import it). An error rolls the mark
	// back; the next sweep tries again.
	OnFailed func(ctx context.Context, tx pgx.Tx, workspaceID string, generation int64) error
	// EnvHookError is the fixed text a provision job records when the
	// host's env hook failed (jobs.ErrEnvHook). A provisioning row past
	// its deadline whose provision was discarded with it is not marked
	// failed: its job is re-run (ClassEnvHookDiscarded).
	EnvHookError string
	// HookMissingError is the text of a job discarded because the workers
	// that fetched it lacked a host hook it needs (jobs.ErrHookMissing):
	// treated like EnvHookError, for the same reason.
	HookMissingError string
}

// Options are one sweep's switches.
type Options struct {
	DryRun bool // report without acting
	Force  bool // act on CP-side strays even when the breaker opens
}

// CP-side outcomes, reported in Result.CPSide.
const (
	CPOK          = "ok"
	CPUnknown     = "unknown"     // a list page failed: nothing CP-side was acted on
	CPUnsupported = "unsupported" // the CP has no list endpoint (404/405)
	CPBreakerOpen = "breaker_open"
)

// Orphan classes, the keys of Result.Orphans.
const (
	ClassUnknownWorkspace   = "unknown_workspace"     // listed instance whose workspace has no row
	ClassDuplicate          = "duplicate"             // listed instance of a workspace that records another
	ClassUnrecorded         = "unrecorded"            // listed instance of a workspace that records none
	ClassStaleInstanceOnRow = "stale_instance_on_row" // stopped/removed/failed row still holding an id
	ClassStoppingWithoutJob = "stopping_without_job"  // stopping row with no terminate job at all
	ClassStoppingDiscarded  = "stopping_discarded"    // stopping row whose terminate was discarded
	ClassStoppingCancelled  = "stopping_cancelled"    // stopping row whose terminate was cancelled
	ClassStuckProvisioning  = "stuck_provisioning"    // provisioning past the deadline, no live job
	// A provisioning row past the deadline whose provision was discarded
	// because the host's env hook kept failing: re-run (the same job), never
	// marked failed, since the host's outage says nothing about the
	// workspace. One more attempt per sweep until the hook works.
	ClassEnvHookDiscarded = "provision_env_hook_discarded"
	// The same, past EnvHookRerunLimit: no longer re-run, reported
	// (error level) every sweep, never marked failed.
	ClassEnvHookGaveUp = "provision_env_hook_gave_up"
	// A discarded or cancelled instance_terminate whose instance may still
	// run: re-run (the same job) like a dead workspace_terminate.
	ClassInstanceTerminateDiscarded = "instance_terminate_discarded"
	ClassInstanceTerminateCancelled = "instance_terminate_cancelled"
	// A dead instance_terminate of a workspace this database has no row
	// for: reported, never re-run (see Result.DeadTerminatesLeft).
	ClassInstanceTerminateNoRow = "instance_terminate_dead_no_row"
)

// SkippedLocked is Result.Skipped when another sweep holds the lock.
const SkippedLocked = "another sweep running"

// Result is one sweep's report: recorded as the job's output (River UI),
// logged as sweep.done, and printed by `enqueue sweep --wait`.
type Result struct {
	ExaminedRows      int            `json:"examined_rows"`
	ExaminedInstances int            `json:"examined_instances"`
	LiveInstances     int            `json:"live_instances"`
	Unreadable        int            `json:"unreadable_instances"` // list entries the client could not read: never acted on
	Orphans           map[string]int `json:"orphans"`
	Enqueued          int            `json:"enqueued"`
	Retried           int            `json:"retried"`
	MarkedFailed      int            `json:"marked_failed"`
	AlreadyQueued     int            `json:"already_queued"`
	HeldDuplicates    int            `json:"held_duplicates"` // listed beside a recorded instance not confirmed live: held for an operator
	Planned           int            `json:"planned"`         // actions decided (on a dry run: not taken)
	SkippedByCap      int            `json:"skipped_by_cap"`
	SkippedYoung      int            `json:"skipped_young"`
	SkippedInFlight   int            `json:"skipped_in_flight"`
	SkippedChanged    int            `json:"skipped_changed"` // the row moved on before the sweep acted
	Errors            int            `json:"errors"`
	BreakerOpen       bool           `json:"breaker_open"`
	// SecondOwnerSuspected: the breaker opened on instances of workspaces
	// this database never had (see Settings.BreakerMinStrays).
	SecondOwnerSuspected bool   `json:"second_owner_suspected,omitempty"`
	CPSide               string `json:"cp_side"`
	DryRun               bool   `json:"dry_run"`
	Forced               bool   `json:"forced"`
	Skipped              string `json:"skipped,omitempty"`
	DurationMS           int64  `json:"duration_ms"`

	// DeadTerminatesLeft counts discarded or cancelled instance_terminates
	// of workspaces this database has no row for, left as they are: a
	// forced sweep queues such jobs, and an operator's Cancel of one (the
	// instance was another deployment's) must stay cancelled.
	DeadTerminatesLeft int `json:"dead_terminates_left"`
}

// Run sweeps once. Unless another sweep holds the lock (then it returns
// at once with Skipped set), it reads the CP list, then re-drives the
// database side, then acts on the CP side's strays, all within the cap.
// It returns an error only when the database fails; a failed list is the
// "unknown" CP side, not an error.
func Run(ctx context.Context, d Deps, s Settings, o Options) (Result, error) {
	s = s.WithDefaults()
	o.DryRun = o.DryRun || s.DryRun
	if !o.DryRun && d.Jobs == nil {
		return Result{}, errors.New("sweep: no job inserter for a sweep that acts")
	}
	r := &run{d: d, s: s, o: o, budget: s.MaxTerminations, started: time.Now(),
		res: Result{Orphans: map[string]int{}, DryRun: o.DryRun, Forced: o.Force}}
	err := r.locked(ctx, func() error {
		cands := r.scanCP(ctx)
		r.reserveCP(cands)
		if err := r.sweepDB(ctx); err != nil {
			return err
		}
		r.actCP(ctx, cands)
		return nil
	})
	r.res.DurationMS = time.Since(r.started).Milliseconds()
	r.report(err)
	return r.res, err
}

// run is one sweep's state.
type run struct {
	d            Deps
	s            Settings
	o            Options
	budget       int // terminations left under the cap
	reserved     int // of budget, kept for the CP side's strays (see reserveCP)
	cpActs       bool
	logged       int // orphan.found lines written
	unreadLogged int // cp_unreadable_instance lines written (a budget of their own)
	statusChecks int // CP status calls made to confirm duplicates
	started      time.Time
	res          Result
	firstErr     error
}

// locked runs fn under the sweep's advisory lock, held on a dedicated
// session so no transaction stays open across CP calls (invariant "no
// transaction across a CP call", docs/design.md).
func (r *run) locked(ctx context.Context, fn func() error) error {
	conn, err := r.d.Pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("sweep: acquire connection for the lock: %w", err)
	}
	ok, err := r.d.Store.TryLockSweep(ctx, conn)
	if err != nil || !ok {
		conn.Release()
		r.res.Skipped = SkippedLocked
		return err
	}
	defer func() {
		// Unlock even when ctx ended; if that fails, close the session so
		// the lock cannot stay with a pooled connection forever.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := r.d.Store.UnlockSweep(uctx, conn); err != nil {
			_ = conn.Conn().Close(uctx)
		}
		conn.Release()
	}()
	return fn()
}

// reserveCP keeps part of the cap for the CP side before the database
// side spends it: the database side runs first, and 100 stops that kept
// failing (each sweep re-drives them) used every sweep's whole budget, so
// no stray was ever terminated. The CP side may claim up to half the cap
// (rounded up) when it has that many strays to act on; the database side
// keeps the rest, and whatever either leaves unused.
func (r *run) reserveCP(sc cpScan) {
	r.cpActs = r.decideCP(sc)
	if r.cpActs {
		r.reserved = min(len(sc.cands), (r.s.MaxTerminations+1)/2)
	}
}

// takeDB spends one termination for the database side, leaving the CP
// side's reserve alone.
func (r *run) takeDB() bool { return r.takeAbove(r.reserved) }

// take spends one termination from the cap; false means skipped by cap.
func (r *run) take() bool { return r.takeAbove(0) }

func (r *run) takeAbove(floor int) bool {
	if r.budget <= floor {
		r.res.SkippedByCap++
		return false
	}
	r.budget--
	r.res.Planned++
	return true
}

// failed counts one orphan the sweep could not act on; the sweep goes on
// so one bad row cannot stall every other.
func (r *run) failed(what string, err error) {
	r.res.Errors++
	if r.firstErr == nil {
		r.firstErr = err
	}
	r.d.Log.Error().Str("evt", "sweep.error").Str("what", what).Err(err).Msg("sweep could not act")
}
