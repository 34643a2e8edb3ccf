package jobs

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"

	"github.com/molecule-ai/provision-worker/internal/budget"
	"github.com/molecule-ai/provision-worker/internal/hookmeta"
	"github.com/molecule-ai/provision-worker/internal/jobtrace"
	"github.com/molecule-ai/provision-worker/internal/obs"
	"github.com/molecule-ai/provision-worker/internal/store"
)

// Client is the River client handlers enqueue through.
type Client = river.Client[pgx.Tx]

// NewInsertClient builds a River client that only inserts (no queues, no
// workers): for request handlers and the enqueue CLI. settings set the
// attempt budgets of the jobs it inserts.
func NewInsertClient(pool *pgxpool.Pool, settings Settings) (*Client, error) {
	cfg, err := insertConfig(settings)
	if err != nil {
		return nil, err
	}
	c, err := river.NewClient(riverpgxv5.New(pool), cfg)
	if err != nil {
		return nil, fmt.Errorf("river insert client: %w", err)
	}
	registerContract(c, settings)
	return c, nil
}

// insertConfig is the River config of an insert-only client, whatever its
// driver: the schema checked, the attempt budgets applied at insert.
func insertConfig(settings Settings) (*river.Config, error) {
	settings = settings.withDefaults()
	if _, err := store.For(settings.Schema); err != nil {
		return nil, err
	}
	return &river.Config{
		Schema: settings.Schema,
		// River sends at most one insert notification per queue per
		// FetchCooldown of the inserting client; at River's 100 ms a
		// second request inside that window waited for the worker's
		// 1 s poll (pickup p99 ~1.5 s at 20 requests/s).
		FetchCooldown: DefaultFetchCooldown,
		Hooks:         []rivertype.Hook{&budget.Hook{For: settings.MaxAttempts}, &hookmeta.InsertHook{For: settings.NeedsHooks}},
		Logger:        quietLogger(),
		Middleware:    jobtrace.Middleware(), // carries the caller's span into the job
	}, nil
}

// Actions a request can take, reported in Result.Action.
const (
	ActionCreated        = "created"         // new row, generation 1, provision job
	ActionNextGeneration = "next_generation" // generation+1, provision job
	ActionNoop           = "noop"            // nothing to change
	ActionStopping       = "stopping"        // row to stopping, terminate job
	ActionAfterStop      = "after_stop"      // desired updated; the running stop finishes it
	ActionStopped        = "stopped"         // no instance: stopped without a CP call
)

// Result says what a request did.
type Result struct {
	Action    string            `json:"action"`
	Workspace Workspace         `json:"-"`
	Job       *rivertype.JobRow `json:"-"` // the job inserted, or the live one that already carries it; nil if none
}

// ProvisionRequest asks for a workspace to run. On an existing row's next
// generation, empty Runtime/PlatformURL, zero Tier and nil Env keep the
// previous generation's values.
type ProvisionRequest struct {
	WorkspaceID string
	Runtime     string
	Tier        int
	PlatformURL string
	Env         map[string]string // may hold secrets: stored beside the row, never in args
	Actor       string            // who asked, for the timeline
}

// RequestProvision makes the workspace run, following the request table
// (docs/design.md#requests), inside the caller's transaction: the row
// change and its job commit together or not at all (invariant
// "one-transaction outbox"). After an insert error the
// transaction is broken (River no longer wraps InsertTx in a savepoint):
// roll it back.
func RequestProvision[TTx any](ctx context.Context, tx TTx, client *river.Client[TTx], req ProvisionRequest) (Result, error) {
	t, err := begin(tx, client)
	if err != nil {
		return Result{}, err
	}
	return requestProvision(ctx, t, req)
}

func requestProvision[TTx any](ctx context.Context, t *txn[TTx], req ProvisionRequest) (Result, error) {
	if err := t.validate(req); err != nil {
		return Result{}, err
	}
	w := store.Workspace{ID: req.WorkspaceID, Nonce: store.NewNonce(), Runtime: req.Runtime, Tier: req.Tier, PlatformURL: req.PlatformURL}
	ws, created, err := t.st.Create(ctx, t.db, w, req.Env)
	if err != nil {
		return Result{}, err
	}
	if created {
		return enqueueProvision(ctx, t, ws, req, ActionCreated)
	}
	// It exists (or a concurrent request just created it): decide under its lock.
	if ws, err = t.st.Lock(ctx, t.db, req.WorkspaceID); err != nil {
		return Result{}, err
	}
	switch {
	case ws.Status == store.StatusProvisioning:
		job, err := liveJob(ctx, t, KindProvision, ws.ID)
		return Result{Action: ActionNoop, Workspace: viewOf(ws), Job: job}, err
	case ws.Status == store.StatusRunning:
		return Result{Action: ActionNoop, Workspace: viewOf(ws)}, nil
	case ws.Status == store.StatusStopping:
		// The terminate's completion starts the next generation, with
		// what this request asks for: nothing provisions this row's
		// current generation any more, so its frozen request may change.
		if err := updateSpec(ctx, t, ws, req); err != nil {
			return Result{}, err
		}
		return afterStop(ctx, t, ws, store.DesiredRunning)
	case ws.Status == store.StatusFailed && ws.InstanceID != "":
		// Terminate first: a provision never overwrites a recorded id.
		return beginStop(ctx, t, ws, store.DesiredRunning, req.Actor)
	}
	return nextGeneration(ctx, t, ws, req)
}

// specFor is ws's request with req's non-empty values over it.
func specFor(ws store.Workspace, req ProvisionRequest) store.Spec {
	spec := store.Spec{Runtime: ws.Runtime, Tier: ws.Tier, PlatformURL: ws.PlatformURL}
	if req.Runtime != "" {
		spec.Runtime = req.Runtime
	}
	if req.Tier != 0 {
		spec.Tier = req.Tier
	}
	if req.PlatformURL != "" {
		spec.PlatformURL = req.PlatformURL
	}
	return spec
}

// updateSpec stores req's values (and env) for the next generation of a
// stopping row.
func updateSpec[TTx any](ctx context.Context, t *txn[TTx], ws store.Workspace, req ProvisionRequest) error {
	if err := t.st.SetSpec(ctx, t.db, ws.ID, specFor(ws, req)); err != nil {
		return err
	}
	if req.Env == nil {
		return nil
	}
	return t.st.SetEnv(ctx, t.db, ws.ID, req.Env)
}

func nextGeneration[TTx any](ctx context.Context, t *txn[TTx], ws store.Workspace, req ProvisionRequest) (Result, error) {
	spec := specFor(ws, req)
	next, err := t.st.StartGeneration(ctx, t.db, ws.ID, ws.Generation, store.NewNonce(), &spec)
	if err != nil {
		return Result{}, err
	}
	return enqueueProvision(ctx, t, next, req, ActionNextGeneration)
}

func enqueueProvision[TTx any](ctx context.Context, t *txn[TTx], ws store.Workspace, req ProvisionRequest, action string) (Result, error) {
	if req.Env != nil && action != ActionCreated { // Create stored it
		if err := t.st.SetEnv(ctx, t.db, ws.ID, req.Env); err != nil {
			return Result{}, err
		}
	}
	res, err := t.client.InsertTx(ctx, t.tx, ProvisionArgs{WorkspaceID: ws.ID, Generation: ws.Generation, Nonce: ws.Nonce}, nil)
	if err != nil {
		return Result{}, fmt.Errorf("insert provision job: %w", err)
	}
	err = t.st.AppendEvent(ctx, t.db, store.Event{
		WorkspaceID: ws.ID, Event: obs.EvProvisionRequested, Actor: actorOr(req.Actor),
		JobID: res.Job.ID, Fields: map[string]any{"generation": ws.Generation, "action": action},
	})
	return Result{Action: action, Workspace: viewOf(ws), Job: res.Job}, err
}

// TerminateRequest asks for a workspace to stop (or, with Delete, to be
// removed).
type TerminateRequest struct {
	WorkspaceID string
	Delete      bool
	Actor       string
}

// RequestTerminate stops the workspace inside the caller's transaction
// (invariant "one-transaction outbox", docs/design.md). It returns ErrUnknownWorkspace when there is no row.
//
// A delete also drops the workspace's env in the same transaction, whatever
// the row's status: nothing runs it again (a later provision of the same
// id brings its own env), and a removed workspace's secrets were otherwise
// kept in workspace_env, and in every backup, for as long as the row.
func RequestTerminate[TTx any](ctx context.Context, tx TTx, client *river.Client[TTx], req TerminateRequest) (Result, error) {
	t, err := begin(tx, client)
	if err != nil {
		return Result{}, err
	}
	if !req.Delete {
		return requestStop(ctx, t, req.WorkspaceID, store.DesiredStopped, req.Actor)
	}
	res, err := requestStop(ctx, t, req.WorkspaceID, store.DesiredDeleted, req.Actor)
	if err != nil {
		return res, err
	}
	return res, t.st.DeleteEnv(ctx, t.db, req.WorkspaceID)
}

// RequestRestart is a terminate whose completion starts the next
// generation; a workspace with nothing running is simply provisioned.
func RequestRestart[TTx any](ctx context.Context, tx TTx, client *river.Client[TTx], workspaceID, actor string) (Result, error) {
	t, err := begin(tx, client)
	if err != nil {
		return Result{}, err
	}
	return requestStop(ctx, t, workspaceID, store.DesiredRunning, actor)
}

func requestStop[TTx any](ctx context.Context, t *txn[TTx], id, desired, actor string) (Result, error) {
	if err := validateWorkspaceID(id); err != nil {
		return Result{}, err
	}
	if err := validateActor(actor); err != nil {
		return Result{}, err
	}
	ws, err := t.st.Lock(ctx, t.db, id)
	if errors.Is(err, store.ErrNotFound) {
		return Result{}, fmt.Errorf("%w %s", ErrUnknownWorkspace, id)
	}
	if err != nil {
		return Result{}, err
	}
	restart := desired == store.DesiredRunning
	switch ws.Status {
	case store.StatusProvisioning, store.StatusRunning:
		return beginStop(ctx, t, ws, desired, actor)
	case store.StatusStopping:
		return afterStop(ctx, t, ws, desired)
	case store.StatusFailed:
		if ws.InstanceID != "" {
			return beginStop(ctx, t, ws, desired, actor)
		}
		// No recorded id, but a record that could not commit may have
		// noted one the CP launched (provision.unrecorded) whose job never
		// ran again: without a list endpoint only a terminate reading the
		// notes stops it, so this stop (or restart) goes through one.
		noted, err := t.st.UnstoppedNotes(ctx, t.db, id, 0, obs.EvProvisionUnrecorded, obs.StopEvents)
		if err != nil {
			return Result{}, err
		}
		if len(noted) > 0 {
			return beginStop(ctx, t, ws, desired, actor)
		}
	}
	if restart { // stopped, removed, or failed without an instance
		return requestProvision(ctx, t, ProvisionRequest{WorkspaceID: id, Actor: actor})
	}
	if ws.Status == store.StatusFailed {
		if err := t.st.MarkStoppedNoInstance(ctx, t.db, id, desired); err != nil {
			return Result{}, err
		}
		ws, err = t.st.Lock(ctx, t.db, id)
		return Result{Action: ActionStopped, Workspace: viewOf(ws)}, err
	}
	return Result{Action: ActionNoop, Workspace: viewOf(ws)}, nil
}

// beginStop moves the row to stopping and inserts its terminate job.
// Provisions never attempted are cancelled: they cannot have launched
// anything. Attempted ones may have, so the terminate waits for them;
// "attempted" is River's attempted_at, not attempt > 0 (a snoozed or
// interrupted first attempt is back at attempt 0).
func beginStop[TTx any](ctx context.Context, t *txn[TTx], ws store.Workspace, desired, actor string) (Result, error) {
	// Locked, so no worker can fetch one between this read and its
	// cancel (River fetches with SKIP LOCKED): a provision cancelled just
	// after it started would have its CP call cut off mid-flight.
	live, err := t.st.LockLiveJobs(ctx, t.db, KindProvision, ws.ID)
	if err != nil {
		return Result{}, err
	}
	for _, j := range live {
		if !j.Attempted && j.State != string(rivertype.JobStateRunning) {
			if _, err := t.client.JobCancelTx(ctx, t.tx, j.ID); err != nil {
				return Result{}, fmt.Errorf("cancel provision job %d: %w", j.ID, err)
			}
		}
	}
	if err := t.st.MarkStopping(ctx, t.db, ws.ID, desired); err != nil {
		return Result{}, err
	}
	res, err := t.client.InsertTx(ctx, t.tx, TerminateArgs{WorkspaceID: ws.ID}, nil)
	if err != nil {
		return Result{}, fmt.Errorf("insert terminate job: %w", err)
	}
	err = t.st.AppendEvent(ctx, t.db, store.Event{
		WorkspaceID: ws.ID, Event: obs.EvTerminateRequested, Actor: actorOr(actor), JobID: res.Job.ID,
		Fields: map[string]any{"desired": desired, "from": ws.Status, "instance_id": ws.InstanceID},
	})
	if err != nil {
		return Result{}, err
	}
	ws, err = t.st.Lock(ctx, t.db, ws.ID)
	return Result{Action: ActionStopping, Workspace: viewOf(ws), Job: res.Job}, err
}

// afterStop records what should happen once the stop under way finishes.
func afterStop[TTx any](ctx context.Context, t *txn[TTx], ws store.Workspace, desired string) (Result, error) {
	if err := t.st.SetDesired(ctx, t.db, ws.ID, desired); err != nil {
		return Result{}, err
	}
	ws.Desired = desired
	job, err := liveJob(ctx, t, KindTerminate, ws.ID)
	return Result{Action: ActionAfterStop, Workspace: viewOf(ws), Job: job}, err
}

// liveJob returns the newest live job of kind for the workspace, or nil.
func liveJob[TTx any](ctx context.Context, t *txn[TTx], kind, id string) (*rivertype.JobRow, error) {
	live, err := t.st.LiveJobs(ctx, t.db, kind, id)
	if err != nil || len(live) == 0 {
		return nil, err
	}
	job, err := t.client.JobGetTx(ctx, t.tx, live[len(live)-1].ID)
	if err != nil {
		return nil, fmt.Errorf("get job: %w", err)
	}
	return job, nil
}

func actorOr(actor string) string {
	if actor == "" {
		return "handler"
	}
	return actor
}

// ErrClientSchema is returned when the River client names no schema, or
// one that is not a plain identifier: River would then follow the
// session's search_path while the rows go to the named schema, and a
// job and its row would part.
var ErrClientSchema = errors.New("jobs: the River client must set Config.Schema to the worker's schema (see NewInsertClient)")

// ErrTxType is returned for a transaction that is neither a pgx.Tx nor a
// *sql.Tx.
var ErrTxType = errors.New("jobs: the transaction must be a pgx.Tx or a *sql.Tx")

// txn is one request's transaction: the caller's, as River inserts
// through it and as the store queries through it, in the River client's
// schema. One setting decides where both the job and the row go.
type txn[TTx any] struct {
	tx     TTx
	db     store.DB
	client *river.Client[TTx]
	st     *store.Store
	needs  hookmeta.Needs // what the client declares (Settings.EnvFromHost, OutcomeToHost)
}

// validate checks req, and refuses Env the client's contract says the
// host's env hook supplies, before anything is written.
func (t *txn[TTx]) validate(req ProvisionRequest) error {
	if err := req.validate(); err != nil {
		return err
	}
	if t.needs.Env && req.Env != nil {
		return ErrEnvWithHostEnv
	}
	return nil
}

func begin[TTx any](tx TTx, client *river.Client[TTx]) (*txn[TTx], error) {
	if client == nil || client.Schema() == "" {
		return nil, ErrClientSchema
	}
	st, err := store.For(client.Schema())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrClientSchema, err)
	}
	db, err := txDB(any(tx))
	if err != nil {
		return nil, err
	}
	return &txn[TTx]{tx: tx, db: db, client: client, st: st, needs: contractOf(client)}, nil
}

// txDB is the store's view of a caller's transaction.
func txDB(tx any) (store.DB, error) {
	switch tx := tx.(type) {
	case pgx.Tx:
		return tx, nil
	case *sql.Tx:
		return store.SQL(tx), nil
	}
	return nil, fmt.Errorf("%w, not %T", ErrTxType, tx)
}
