package jobs

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/molecule-ai/provision-worker/internal/obs"
	"github.com/molecule-ai/provision-worker/internal/store"
)

// ErrDuplicateInBatch is returned (wrapping ErrInvalidInput) when one
// batch names a workspace twice. Two provisions of one id in one batch
// could ask for different runtimes, and the singles would run the first
// and no-op the second: refusing says so instead of guessing which the
// caller meant.
var ErrDuplicateInBatch = fmt.Errorf("%w: a workspace id appears more than once in the batch", ErrInvalidInput)

// RequestProvisionMany is RequestProvision for a batch (an org import),
// in the caller's transaction, all or nothing: results[i] answers reqs[i].
//
// Ids with no row, the import's case, are created set-based: one INSERT
// for the rows and their env, one River InsertManyTx for the jobs, one
// INSERT for the timeline. Ids that already have a row go through the
// single request's state table one by one, after the set-based part, so
// every status behaves exactly as RequestProvision. After an error the
// transaction is broken: roll it back.
func RequestProvisionMany[TTx any](ctx context.Context, tx TTx, client *river.Client[TTx], reqs []ProvisionRequest) ([]Result, error) {
	t, err := begin(tx, client)
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(reqs))
	for i, r := range reqs {
		if err := t.validate(r); err != nil {
			return nil, fmt.Errorf("request %d: %w", i, err)
		}
		ids[i] = r.WorkspaceID
	}
	if err := refuseDuplicates(ids); err != nil || len(reqs) == 0 {
		return nil, err
	}
	rows := make([]store.NewRow, len(reqs))
	for i, r := range reqs {
		rows[i] = store.NewRow{ID: store.CanonicalID(r.WorkspaceID), Nonce: store.NewNonce(),
			Runtime: r.Runtime, Tier: r.Tier, PlatformURL: r.PlatformURL, Env: r.Env}
	}
	created, err := t.st.CreateMany(ctx, t.db, rows)
	if err != nil {
		return nil, err
	}
	results, err := enqueueCreated(ctx, t, reqs, created)
	if err != nil {
		return nil, err
	}
	for i, r := range reqs { // rows that existed: the state table, one at a time
		if results[i].Action != "" {
			continue
		}
		if results[i], err = requestProvision(ctx, t, r); err != nil {
			return nil, fmt.Errorf("request %d: %w", i, err)
		}
	}
	return results, nil
}

// enqueueCreated inserts the provision jobs and timeline lines of the
// rows CreateMany made, and fills their results.
func enqueueCreated[TTx any](ctx context.Context, t *txn[TTx], reqs []ProvisionRequest, created []store.Workspace) ([]Result, error) {
	results := make([]Result, len(reqs))
	if len(created) == 0 {
		return results, nil
	}
	byID := make(map[string]store.Workspace, len(created))
	for _, ws := range created {
		byID[ws.ID] = ws
	}
	var idx []int
	var params []river.InsertManyParams
	for i, r := range reqs {
		if ws, ok := byID[store.CanonicalID(r.WorkspaceID)]; ok {
			idx = append(idx, i)
			params = append(params, river.InsertManyParams{Args: ProvisionArgs{WorkspaceID: ws.ID, Generation: ws.Generation, Nonce: ws.Nonce}})
		}
	}
	jobs, err := t.client.InsertManyTx(ctx, t.tx, params)
	if err != nil {
		return nil, fmt.Errorf("insert provision jobs: %w", err)
	}
	evs := make([]store.Event, len(idx))
	for k, i := range idx {
		ws := byID[store.CanonicalID(reqs[i].WorkspaceID)]
		results[i] = Result{Action: ActionCreated, Workspace: viewOf(ws), Job: jobs[k].Job}
		evs[k] = store.Event{WorkspaceID: ws.ID, Event: obs.EvProvisionRequested, Actor: actorOr(reqs[i].Actor),
			JobID: jobs[k].Job.ID, Fields: map[string]any{"generation": ws.Generation, "action": ActionCreated}}
	}
	return results, t.st.AppendEvents(ctx, t.db, evs)
}

// TerminateOptions apply to every id of a RequestTerminateMany.
type TerminateOptions struct {
	Delete bool
	Actor  string
}

// RequestTerminateMany is RequestTerminate for a batch (a subtree
// delete), in the caller's transaction, all or nothing: results[i]
// answers ids[i]. Ids with no row are refused together, in one
// ErrUnknownWorkspace naming them, before anything is written.
//
// Running and provisioning rows, the common case, stop set-based: one
// UPDATE of the rows, one River InsertManyTx of the terminates, one
// INSERT of the timeline (and, for a delete, one DELETE of their env).
// Rows in any other status go through the single request's state table
// one by one. Provision jobs to cancel (never attempted) are cancelled
// with River's JobCancelTx, one call per such job.
func RequestTerminateMany[TTx any](ctx context.Context, tx TTx, client *river.Client[TTx], ids []string, opts TerminateOptions) ([]Result, error) {
	t, err := begin(tx, client)
	if err != nil {
		return nil, err
	}
	for i, id := range ids {
		if err := validateWorkspaceID(id); err != nil {
			return nil, fmt.Errorf("id %d: %w", i, err)
		}
	}
	if err := validateActor(opts.Actor); err != nil {
		return nil, err
	}
	if err := refuseDuplicates(ids); err != nil || len(ids) == 0 {
		return nil, err
	}
	locked, err := t.st.LockMany(ctx, t.db, ids)
	if err != nil {
		return nil, err
	}
	byID := make(map[string]store.Workspace, len(locked))
	for _, ws := range locked {
		byID[ws.ID] = ws
	}
	if err := refuseUnknown(ids, byID); err != nil {
		return nil, err
	}
	desired := store.DesiredStopped
	if opts.Delete {
		desired = store.DesiredDeleted
	}
	results, err := stopMany(ctx, t, ids, byID, desired, opts.Actor)
	if err != nil {
		return nil, err
	}
	for i, id := range ids {
		if results[i].Action != "" {
			continue
		}
		if results[i], err = requestStop(ctx, t, id, desired, opts.Actor); err != nil {
			return nil, fmt.Errorf("id %d: %w", i, err)
		}
	}
	if !opts.Delete {
		return results, nil
	}
	return results, t.st.DeleteEnvMany(ctx, t.db, ids)
}

// stopMany is beginStop for every running or provisioning row of byID.
func stopMany[TTx any](ctx context.Context, t *txn[TTx], ids []string, byID map[string]store.Workspace, desired, actor string) ([]Result, error) {
	results := make([]Result, len(ids))
	var idx []int
	var stop, provisioning []string
	for i, id := range ids {
		ws := byID[store.CanonicalID(id)]
		if ws.Status == store.StatusRunning || ws.Status == store.StatusProvisioning {
			idx = append(idx, i)
			stop = append(stop, ws.ID)
			if ws.Status == store.StatusProvisioning {
				provisioning = append(provisioning, ws.ID)
			}
		}
	}
	if len(stop) == 0 {
		return results, nil
	}
	if err := cancelUnattempted(ctx, t, provisioning); err != nil {
		return nil, err
	}
	updated, err := t.st.MarkStoppingMany(ctx, t.db, stop, desired)
	if err != nil {
		return nil, err
	}
	after := make(map[string]store.Workspace, len(updated))
	for _, ws := range updated {
		after[ws.ID] = ws
	}
	params := make([]river.InsertManyParams, len(stop))
	for k, id := range stop {
		params[k] = river.InsertManyParams{Args: TerminateArgs{WorkspaceID: id}}
	}
	jobs, err := t.client.InsertManyTx(ctx, t.tx, params)
	if err != nil {
		return nil, fmt.Errorf("insert terminate jobs: %w", err)
	}
	evs := make([]store.Event, len(stop))
	for k, i := range idx {
		before := byID[stop[k]]
		results[i] = Result{Action: ActionStopping, Workspace: viewOf(after[stop[k]]), Job: jobs[k].Job}
		evs[k] = store.Event{WorkspaceID: stop[k], Event: obs.EvTerminateRequested, Actor: actorOr(actor), JobID: jobs[k].Job.ID,
			Fields: map[string]any{"desired": desired, "from": before.Status, "instance_id": before.InstanceID}}
	}
	return results, t.st.AppendEvents(ctx, t.db, evs)
}

// cancelUnattempted cancels the provision jobs of ids that no worker has
// fetched yet, under the lock that keeps workers from fetching them (see
// beginStop); attempted ones may have launched, so the terminate waits.
func cancelUnattempted[TTx any](ctx context.Context, t *txn[TTx], ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	live, err := t.st.LockLiveJobsMany(ctx, t.db, KindProvision, ids)
	if err != nil {
		return err
	}
	for _, j := range live {
		if !j.Attempted && j.State != string(rivertype.JobStateRunning) {
			if _, err := t.client.JobCancelTx(ctx, t.tx, j.ID); err != nil {
				return fmt.Errorf("cancel provision job %d: %w", j.ID, err)
			}
		}
	}
	return nil
}

// refuseDuplicates refuses a batch that names one workspace twice (in any
// letter case), naming the ids.
func refuseDuplicates(ids []string) error {
	seen := make(map[string]bool, len(ids))
	var dup []string
	for _, id := range ids {
		c := store.CanonicalID(id)
		if seen[c] && !slices.Contains(dup, c) {
			dup = append(dup, c)
		}
		seen[c] = true
	}
	if len(dup) > 0 {
		return fmt.Errorf("%w: %s", ErrDuplicateInBatch, strings.Join(dup, ", "))
	}
	return nil
}

// refuseUnknown names every id of the batch that has no row.
func refuseUnknown(ids []string, byID map[string]store.Workspace) error {
	var unknown []string
	for _, id := range ids {
		if _, ok := byID[store.CanonicalID(id)]; !ok {
			unknown = append(unknown, store.CanonicalID(id))
		}
	}
	if len(unknown) > 0 {
		return fmt.Errorf("%w %s", ErrUnknownWorkspace, strings.Join(unknown, ", "))
	}
	return nil
}
