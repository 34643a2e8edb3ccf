package jobs

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/molecule-ai/provision-worker/internal/cp"
	"github.com/molecule-ai/provision-worker/internal/obs"
	"github.com/molecule-ai/provision-worker/internal/store"
)

// ImportRow is one of the host's running workspaces, registered as owned
// and running before the first sweep (cutover onto a live fleet).
type ImportRow struct {
	WorkspaceID string `json:"workspace_id"`
	InstanceID  string `json:"instance_id"`
	Runtime     string `json:"runtime"`
	Tier        int    `json:"tier"`
	PlatformURL string `json:"platform_url,omitempty"`
	// Removed marks a host row the host already deleted whose instance
	// still runs: the old polling loop's unfinished stop. It is
	// registered like the others, and the caller requests its
	// terminate-with-delete in the same transaction (ImportReport.Stops,
	// then RequestTerminateMany with Delete): left out of the import it
	// would run on for ever, and as an instance of a workspace the worker
	// never had it opens the sweep's breaker. On a re-run, a removed row
	// whose stop the worker already has (desired not running) is
	// unchanged.
	Removed bool `json:"removed,omitempty"`
}

// ImportOptions tune Import.
type ImportOptions struct {
	// Schema is the worker's schema ("" is the default, "provisioner").
	Schema string
	// DryRun decides every row and changes nothing.
	DryRun bool
	// Actor names who imported, on the timeline ("" is "import").
	Actor string
	// Live, when not nil, is the CP's list of live instances (instance id
	// to the workspace id the CP tags it with), read by the caller once
	// before the import: a new row whose instance is not in it is refused
	// ("not live at the CP"), and so is one the CP tags with another
	// workspace. Without it a host row whose instance is long gone (a
	// stale id the old flow never cleared) is registered running, and
	// nothing ever notices: the sweep judges only instances the CP lists,
	// never running rows against the CP. Import itself never calls the
	// CP (it runs inside the caller's transaction); `enqueue import` fills
	// Live from the CP's list unless given --no-cp-check, and a host
	// should do the same. nil means not checked (a CP without a list
	// endpoint); an empty, non-nil map means the CP holds nothing live.
	Live map[string]string
}

// Import actions, one per row.
const (
	ImportCreated   = "created"   // registered as owned and running
	ImportUnchanged = "unchanged" // already registered with this instance (idempotent re-run)
	ImportRefused   = "refused"   // see ImportOutcome.Reason
)

// ImportOutcome is what Import did (or, in a dry run, would do) with one row.
type ImportOutcome struct {
	Row    ImportRow
	Action string
	Reason string // why it was refused; "" otherwise
}

// ImportReport lists every row's outcome, in input order.
type ImportReport struct {
	Outcomes                    []ImportOutcome
	Created, Unchanged, Refused int
}

// importActor is the timeline's actor when ImportOptions.Actor is empty.
const importActor = "import"

// Import registers rows as owned and running inside the caller's
// transaction (db from PgxDB or SQLDB), so the first sweep after a
// cutover sees the host's live fleet as its own: without it every running
// instance is a stray, the breaker holds, and a `--force` would terminate
// the fleet.
//
// Each row becomes a workspace row in status running (desired running,
// generation 1, a fresh nonce) recording its instance, with a
// workspace.imported event; no env is stored (a later restart takes its
// env from the host's env hook, or from the request that asks for it).
// A row already registered with the same instance and running is
// unchanged, so a re-run is harmless.
//
// A row is refused, alone, when its values are malformed, its instance is
// recorded on another workspace (or given for two workspaces in rows),
// or its workspace is already registered with another instance or in a
// state other than running, or its instance is being stopped by a live
// instance_terminate job (a sweep condemned it as a stray), or, with
// opts.Live, the CP does not hold it live for that workspace: a refused
// row never stops the others, and the
// report says why each was refused. A database error fails the whole call
// (the caller rolls back). DryRun decides every row the same way, without
// locking or writing anything. Three statements, whatever len(rows).
func Import(ctx context.Context, db DB, rows []ImportRow, opts ImportOptions) (ImportReport, error) {
	st, err := store.For(opts.Schema)
	if err != nil {
		return ImportReport{}, err
	}
	if db.db == nil {
		return ImportReport{}, errors.New("jobs: Import needs a DB from PgxDB or SQLDB")
	}
	actor := opts.Actor
	if actor == "" {
		actor = importActor
	}
	if err := validateActor(actor); err != nil {
		return ImportReport{}, err
	}
	im := newImport(rows)
	if err := im.decide(ctx, st, db.db, !opts.DryRun, opts.Live); err != nil {
		return ImportReport{}, err
	}
	if !opts.DryRun {
		if err := im.write(ctx, st, db.db, actor); err != nil {
			return ImportReport{}, err
		}
	}
	return im.report(), nil
}

// importRun is one call's working state: every row's outcome so far, and
// the rows still to decide against the database.
type importRun struct {
	out   []ImportOutcome
	ids   []string // canonical workspace id of each row
	dupOf []int    // index of the identical row this one repeats, or -1
	todo  []int    // rows that passed the checks in Go, first occurrences only
}

// newImport checks every row in Go: its values, then conflicts inside
// the input itself (an instance given for two workspaces, a workspace
// given twice with different values: every such row is refused, as there
// is no telling which is right). Identical repeats follow their first
// occurrence's outcome.
func newImport(rows []ImportRow) *importRun {
	im := &importRun{out: make([]ImportOutcome, len(rows)), ids: make([]string, len(rows)), dupOf: make([]int, len(rows))}
	byWS := map[string][]int{}
	wsOfInstance := map[string]map[string]bool{}
	for i, r := range rows {
		im.out[i].Row, im.dupOf[i] = r, -1
		im.ids[i] = store.CanonicalID(r.WorkspaceID)
		if reason := rowProblem(r); reason != "" {
			im.refuse(i, reason)
			continue
		}
		byWS[im.ids[i]] = append(byWS[im.ids[i]], i)
		if wsOfInstance[r.InstanceID] == nil {
			wsOfInstance[r.InstanceID] = map[string]bool{}
		}
		wsOfInstance[r.InstanceID][im.ids[i]] = true
	}
	for i := range rows {
		if im.out[i].Action != "" {
			continue
		}
		same := byWS[im.ids[i]]
		switch n := len(wsOfInstance[rows[i].InstanceID]); {
		case n > 1:
			im.refuse(i, fmt.Sprintf("instance %s is given for %d workspaces in this input", rows[i].InstanceID, n))
		case !allSame(rows, same):
			im.refuse(i, fmt.Sprintf("workspace is given %d times in this input, with different values", len(same)))
		case same[0] != i:
			im.dupOf[i] = same[0]
		default:
			im.todo = append(im.todo, i)
		}
	}
	return im
}

// rowProblem is why a row's own values are unusable, or "".
func rowProblem(r ImportRow) string {
	switch {
	case !cp.ValidWorkspaceID(r.WorkspaceID):
		return "workspace id must be a UUID"
	case !cp.ValidInstanceID(r.InstanceID):
		return "instance id must match ^i-[0-9a-f]{8,17}$"
	}
	req := ProvisionRequest{WorkspaceID: r.WorkspaceID, Runtime: r.Runtime, Tier: r.Tier, PlatformURL: r.PlatformURL}
	if err := req.validate(); err != nil {
		return strings.TrimPrefix(err.Error(), ErrInvalidInput.Error()+": ")
	}
	return ""
}

// allSame reports whether the rows at idx are all equal.
func allSame(rows []ImportRow, idx []int) bool {
	for _, j := range idx[1:] {
		if !sameRow(rows[idx[0]], rows[j]) {
			return false
		}
	}
	return true
}

func sameRow(a, b ImportRow) bool {
	return store.CanonicalID(a.WorkspaceID) == store.CanonicalID(b.WorkspaceID) && a.InstanceID == b.InstanceID &&
		a.Runtime == b.Runtime && a.Tier == b.Tier && a.PlatformURL == b.PlatformURL && a.Removed == b.Removed
}

func (im *importRun) refuse(i int, reason string) {
	im.out[i].Action, im.out[i].Reason = ImportRefused, reason
}

// decide reads the rows' workspaces (under FOR UPDATE unless a dry run),
// the current owners of their instances and the instances live
// instance_terminate jobs are stopping, and settles every row: a row
// still to be created is marked created before write inserts it.
//
// The condemned check closes the race with a sweep that ran before the
// import (a forced one, or one whose breaker let strays through): its
// instance_terminate re-checks ownership when it runs, and if that
// re-check ran before this import commits, it terminates the instance
// and the imported row would say running on nothing, for good. Refusing
// the row leaves the host's row for the operator (its instance is
// going). A residual window remains: a sweep deciding concurrently with
// the import, before the import commits, can still queue a terminate
// this read did not see. The cutover closes it by order: the sweep is
// off (no worker running the orphan sweep) until the import commits.
func (im *importRun) decide(ctx context.Context, st *store.Store, db store.DB, lock bool, live map[string]string) error {
	if len(im.todo) == 0 {
		return nil
	}
	ids, instances := make([]string, len(im.todo)), make([]string, len(im.todo))
	for k, i := range im.todo {
		ids[k], instances[k] = im.ids[i], im.out[i].Row.InstanceID
	}
	existing, err := st.ReadMany(ctx, db, ids, lock)
	if err != nil {
		return fmt.Errorf("jobs: import: %w", err)
	}
	ownerOf, condemned, err := st.InstanceClaims(ctx, db, instances)
	if err != nil {
		return fmt.Errorf("jobs: import: %w", err)
	}
	byID := make(map[string]store.Workspace, len(existing))
	for _, w := range existing {
		byID[w.ID] = w
	}
	for _, i := range im.todo {
		inst := im.out[i].Row.InstanceID
		if w, ok := byID[im.ids[i]]; ok {
			im.against(i, w, inst, im.out[i].Row.Removed)
			continue
		}
		if owner, ok := ownerOf[inst]; ok {
			im.refuse(i, "instance is already owned by workspace "+owner)
			continue
		}
		if reason := newRowProblem(im.out[i].Row, im.ids[i], condemned, live); reason != "" {
			im.refuse(i, reason)
			continue
		}
		im.out[i].Action = ImportCreated
	}
	return nil
}

// newRowProblem is why a row new to the worker must not be registered
// on its instance, or "": a live instance_terminate is stopping it, or
// (live not nil) the CP does not hold it live for workspace id. A
// removed row's advice differs: its instance was to be stopped anyway.
func newRowProblem(r ImportRow, id string, condemned map[string]bool, live map[string]string) string {
	inst := r.InstanceID
	if condemned[inst] {
		if r.Removed {
			return "a live instance_terminate job is stopping this instance already: not imported; " +
				"once it completes, clear the host row's instance id"
		}
		return "a live instance_terminate job is stopping this instance (a sweep took it for a stray): " +
			"not imported; let the job finish, then provision the workspace again (its host row's instance is gone)"
	}
	if live == nil {
		return ""
	}
	ws, ok := live[inst]
	switch {
	case !ok && r.Removed:
		return "instance is not live at the CP: nothing to stop; not imported: clear the removed host row's instance id"
	case !ok:
		return "instance is not live at the CP (terminated, or never launched): not imported; " +
			"the host row's instance id is stale: provision the workspace again or remove the row"
	case store.CanonicalID(ws) != id:
		if !cp.ValidWorkspaceID(ws) {
			ws = "(not a UUID)" // the CP's text is never echoed
		}
		return "the CP tags this instance with workspace " + ws + ": not imported; check the host row's instance id"
	}
	return ""
}

// against settles a row whose workspace is already registered: the same
// instance, running, is a re-run, and so is a removed row whose stop the
// worker already has (an earlier import requested it; the instance id is
// cleared once the stop is done); anything else is the worker's own
// state and is never overwritten by an import.
func (im *importRun) against(i int, w store.Workspace, inst string, removed bool) {
	switch {
	case removed && w.Desired != store.DesiredRunning && (w.InstanceID == inst || w.InstanceID == ""):
		im.out[i].Action = ImportUnchanged
	case removed:
		im.refuse(i, fmt.Sprintf("removed row: the workspace is registered with instance %q (%s, desired %s); stop it with RequestTerminate", w.InstanceID, w.Status, w.Desired))
	case w.InstanceID == inst && w.Status == store.StatusRunning:
		im.out[i].Action = ImportUnchanged
	case w.InstanceID == inst:
		im.refuse(i, fmt.Sprintf("workspace is already registered with this instance, but %s, not running", w.Status))
	case w.InstanceID == "":
		im.refuse(i, fmt.Sprintf("workspace is already registered, %s, without an instance", w.Status))
	default:
		im.refuse(i, fmt.Sprintf("workspace is already registered with instance %s (%s)", w.InstanceID, w.Status))
	}
}

// write inserts the rows decided as created, with their events, in one
// statement. A row a concurrent transaction registered since decide read
// (its id or its instance) is refused, not overwritten.
func (im *importRun) write(ctx context.Context, st *store.Store, db store.DB, actor string) error {
	var rows []store.ImportedRow
	var idx []int
	for _, i := range im.todo {
		if im.out[i].Action != ImportCreated {
			continue
		}
		r := im.out[i].Row
		rows = append(rows, store.ImportedRow{ID: im.ids[i], InstanceID: r.InstanceID, Nonce: store.NewNonce(),
			Runtime: r.Runtime, Tier: r.Tier, PlatformURL: r.PlatformURL})
		idx = append(idx, i)
	}
	if len(rows) == 0 {
		return nil
	}
	created, err := st.ImportMany(ctx, db, rows, obs.EvWorkspaceImported, actor)
	if err != nil {
		return fmt.Errorf("jobs: import: %w", err)
	}
	for _, i := range idx {
		if !created[im.ids[i]] {
			im.refuse(i, "registered by a concurrent transaction since this import read it; run the import again")
		}
	}
	return nil
}

// Stops lists the workspace ids of the rows marked Removed that this call
// registered (created, first occurrences only): the caller requests their
// terminate-with-delete in the same transaction. A dry run lists the rows
// it would register.
func (r ImportReport) Stops() []string {
	out := []string{}
	seen := map[string]bool{}
	for _, o := range r.Outcomes {
		id := store.CanonicalID(o.Row.WorkspaceID)
		if o.Row.Removed && o.Action == ImportCreated && !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

// report fills in the repeats and counts every outcome.
func (im *importRun) report() ImportReport {
	rep := ImportReport{Outcomes: im.out}
	for i := range im.out {
		if j := im.dupOf[i]; j >= 0 {
			im.out[i].Action, im.out[i].Reason = im.out[j].Action, im.out[j].Reason
			if im.out[j].Action == ImportCreated {
				im.out[i].Action = ImportUnchanged // the first occurrence registered it
			}
		}
		switch im.out[i].Action {
		case ImportCreated:
			rep.Created++
		case ImportUnchanged:
			rep.Unchanged++
		default:
			rep.Refused++
		}
	}
	return rep
}
