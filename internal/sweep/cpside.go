package sweep

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/molecule-ai/provision-worker/internal/cp"
	"github.com/molecule-ai/provision-worker/internal/obs"
	"github.com/molecule-ai/provision-worker/internal/riverjob"
	"github.com/molecule-ai/provision-worker/internal/store"
)

// maxListPages bounds one walk of the CP list: a cursor that never ends
// makes the CP side unknown instead of holding the sweep forever.
const maxListPages = 100_000

// candidate is a CP-side stray the sweep may terminate.
type candidate struct {
	ws, inst, class string
	launched        time.Time
}

// cpScan is what reading the CP list found.
type cpScan struct {
	cands    []candidate // the first MaxTerminations strays, in list order
	strays   int         // every stray found (the breaker's numerator)
	foreign  int         // strays of workspaces this database never had
	overflow int         // strays beyond cands
}

// scanCP reads the CP list page by page, and looks each page up in the
// database right after reading it: an instance recorded meanwhile is seen
// as recorded (the cloud is read before the records, as Karpenter does).
// Any failed page makes the whole CP side unknown: a partial list is never
// read as the fleet.
func (r *run) scanCP(ctx context.Context) cpScan {
	var sc cpScan
	cursor := ""
	for range maxListPages {
		page, err := r.d.CP.List(ctx, cp.ListOptions{Cursor: cursor, Limit: r.s.PageSize})
		if err != nil {
			r.listFailed(err, cursor == "")
			return cpScan{}
		}
		r.unreadable(page.Skipped)
		if err := r.classifyPage(ctx, page.Instances, &sc); err != nil {
			r.failed("classify CP page", err)
			r.res.CPSide = CPUnknown
			return cpScan{}
		}
		if page.NextCursor == "" {
			r.res.CPSide = CPOK
			return sc
		}
		cursor = page.NextCursor
	}
	r.listFailed(errors.New("cp list did not end"), false)
	return cpScan{}
}

// listFailed marks the CP side unknown, or unsupported for a CP without
// the list endpoint, which is logged every sweep: CP-side reconciliation
// is then off, and a CP-side reconciler must cover what a lost provision
// answer launched.
func (r *run) listFailed(err error, first bool) {
	if first && errors.Is(err, cp.ErrListUnsupported) {
		r.res.CPSide = CPUnsupported
		r.d.Log.Warn().Str("evt", obs.EvSweepNoList).
			Msg("CP has no list endpoint: CP-side reconciliation is off; the database side still runs")
		return
	}
	r.res.CPSide = CPUnknown
	r.d.Log.Warn().Str("evt", "sweep.cp_unknown").Err(err).
		Msg("CP list failed: CP side unknown, nothing CP-side acted on this sweep")
}

// unreadable reports list entries the client could not read. They are
// left alone (they may be any workspace's instance) and counted, and the
// rest of the page is acted on: one untagged instance that failed the
// whole page once left every stray in the fleet running.
func (r *run) unreadable(skipped []cp.Skipped) {
	for _, s := range skipped {
		r.res.Unreadable++
		if r.unreadLogged >= maxFoundLines {
			continue // its own budget: a page of these must not mute orphan.found
		}
		r.unreadLogged++
		obs.Event(r.d.Log, zerolog.WarnLevel, obs.EvSweepUnreadable, obs.Fields{
			InstanceID: s.InstanceID, Extra: map[string]any{"reason": s.Reason, "action": "left alone"}})
	}
}

// classifyPage sorts one page into recorded, young, in flight and strays.
func (r *run) classifyPage(ctx context.Context, page []cp.Instance, sc *cpScan) error {
	r.res.ExaminedInstances += len(page)
	ids, wss := make([]string, 0, len(page)), make([]string, 0, len(page))
	live := page[:0:0]
	for _, in := range page {
		if in.Live() {
			in.WorkspaceID = store.CanonicalID(in.WorkspaceID)
			live = append(live, in)
			ids, wss = append(ids, in.InstanceID), append(wss, in.WorkspaceID)
		}
	}
	r.res.LiveInstances += len(live)
	if len(live) == 0 {
		return nil
	}
	owners, err := r.d.Store.InstanceOwners(ctx, r.d.Pool, ids, wss)
	if err != nil {
		return err
	}
	old, oldWS := live[:0], wss[:0]
	for _, in := range live {
		switch {
		case owners[in.InstanceID].Recorded:
		case time.Since(in.LaunchedAt) < r.s.Grace:
			r.res.SkippedYoung++
		default:
			old, oldWS = append(old, in), append(oldWS, in.WorkspaceID)
		}
	}
	if len(old) == 0 {
		return nil
	}
	inFlight, err := r.d.Store.WorkspacesWithLiveJobs(ctx, r.d.Pool, riverjob.KindProvision, oldWS)
	if err != nil {
		return err
	}
	for _, in := range old {
		o := owners[in.InstanceID]
		switch {
		case inFlight[in.WorkspaceID]:
			r.res.SkippedInFlight++
		case classOf(o) == ClassDuplicate && !o.Condemned && len(sc.cands) < r.s.MaxTerminations &&
			!r.recordedLive(ctx, in, o.RowInstanceID):
			// Held and reported by recordedLive. Only a duplicate that
			// would be acted on is checked: past the cap it is counted
			// and skipped by the cap like any stray.
		default:
			r.stray(sc, in, classOf(o), o.Condemned)
		}
	}
	return nil
}

// recordedLive reports whether the row's recorded instance is confirmed
// live, which is what makes in a duplicate. A database restored from
// before two restarts recorded instances that were gone and listed the
// ones running as duplicates: the sweep killed every live instance of
// those workspaces and their rows said running for good. A row whose
// recorded instance is gone, unknown or unconfirmed is stale, and its
// listed instance may be the one that should run: it is held for an
// operator (sweep.stale_row), never terminated. The status calls are
// bounded (twice the cap, at least 100).
func (r *run) recordedLive(ctx context.Context, in cp.Instance, recorded string) bool {
	state, err := "", error(nil)
	if r.statusChecks >= max(2*r.s.MaxTerminations, 100) {
		err = errors.New("status checks for this sweep used up")
	} else {
		r.statusChecks++
		state, err = r.d.CP.Status(ctx, in.WorkspaceID, recorded)
	}
	if err == nil && state != "terminated" && state != "shutting-down" {
		return true
	}
	r.res.HeldDuplicates++
	extra := map[string]any{"recorded_instance_id": recorded, "recorded_state": state, "action": "held for an operator",
		"hint": "the row records an instance that is not confirmed live: check the workspace (a restored database?) before terminating either"}
	if err != nil {
		extra["error"] = err.Error()
	}
	obs.Event(r.d.Log, zerolog.ErrorLevel, obs.EvSweepStaleRow, obs.Fields{
		WorkspaceID: in.WorkspaceID, InstanceID: in.InstanceID, Extra: extra})
	return false
}

func classOf(o store.InstanceOwner) string {
	switch {
	case !o.WorkspaceExists:
		return ClassUnknownWorkspace
	case o.RowInstanceID != "":
		return ClassDuplicate
	}
	return ClassUnrecorded
}

// stray counts one stray and makes it a candidate, unless a live
// instance_terminate already holds it: strays whose terminate keeps
// failing came first in list order, filled every candidate slot, and a
// new stray was skipped by the cap on every sweep.
func (r *run) stray(sc *cpScan, in cp.Instance, class string, condemned bool) {
	r.found(class, in.WorkspaceID, in.InstanceID, map[string]any{"launched_at": in.LaunchedAt, "state": in.State})
	sc.strays++
	if class == ClassUnknownWorkspace {
		sc.foreign++
	}
	if condemned {
		r.res.AlreadyQueued++
		return
	}
	if len(sc.cands) < r.s.MaxTerminations {
		sc.cands = append(sc.cands, candidate{ws: in.WorkspaceID, inst: in.InstanceID, class: class, launched: in.LaunchedAt})
		return
	}
	sc.overflow++
}

// decideCP reports whether the CP side may act on its strays: only when
// the list was read whole and the breaker stays closed. The breaker opens
// when the strays reach BreakerMinStrays and exceed BreakerShare of the
// live fleet (below the floor, a small fleet's one stray was held until
// an operator forced a sweep). Instances of workspaces this database
// never had always open it: our own leaks always have a row (a row is
// written before any provision and never deleted), so such instances
// belong to a second owner of the org id (another deployment, a database
// restored from before they were made, a fleet not yet imported), and a
// second deployment holding two of twelve instances had them killed
// without a word.
func (r *run) decideCP(sc cpScan) bool {
	if r.res.CPSide != CPOK {
		return false
	}
	share := r.s.BreakerShare * float64(r.res.LiveInstances)
	shareTrip := sc.strays >= r.s.BreakerMinStrays && float64(sc.strays) > share
	ownerTrip := r.s.BreakerShare < 1 && sc.foreign > 0
	if !shareTrip && !ownerTrip {
		return true
	}
	r.res.BreakerOpen = true
	r.res.SecondOwnerSuspected = ownerTrip
	if ownerTrip {
		obs.Event(r.d.Log, zerolog.ErrorLevel, obs.EvSweepSecondOwner, obs.Fields{Extra: map[string]any{
			"unknown_workspace_instances": sc.foreign,
			"hint":                        "one database must own an org id: check MOLECULE_ORG_ID of every deployment, and whether this database was restored"}})
	}
	obs.Event(r.d.Log, zerolog.ErrorLevel, obs.EvSweepBreakerOpen, obs.Fields{Extra: map[string]any{
		"strays": sc.strays, "live_instances": r.res.LiveInstances, "share": r.s.BreakerShare,
		"min_strays": r.s.BreakerMinStrays, "unknown_workspace_instances": sc.foreign, "second_owner_suspected": ownerTrip,
		"forced": r.o.Force, "hint": breakerHint(sc.foreign)}})
	if !r.o.Force {
		r.res.CPSide = CPBreakerOpen
		return false
	}
	return true
}

// breakerHint tells the operator what to do about an open breaker.
// Instances of workspaces this database never had are, after a cutover,
// most often host rows the import left out (removed rows that still hold
// an instance, above all): re-running the import registers them, where
// a --force would terminate them.
func breakerHint(foreign int) string {
	if foreign > 0 {
		return "instances of workspaces this database never had: if the host's fleet was imported, re-run the import " +
			"(`enqueue import`, removed rows included, --dry-run first); otherwise check the database and org id; " +
			"only then run `enqueue sweep --force`"
	}
	return "check the database and org id, then run `enqueue sweep --force`"
}

// actCP terminates the strays decideCP let through, within what is left
// of the cap.
func (r *run) actCP(ctx context.Context, sc cpScan) {
	if !r.cpActs {
		return
	}
	for _, c := range sc.cands {
		if r.take() && !r.o.DryRun {
			r.terminateInstance(ctx, c)
		}
	}
	r.res.SkippedByCap += sc.overflow
}

// terminateInstance hands one stray to instance_terminate, deciding again
// under the workspace's row lock (the lock recording and adoption take):
// a provision may have recorded or adopted it since the page was read.
// The job re-checks once more before its CP call.
func (r *run) terminateInstance(ctx context.Context, c candidate) {
	outcome := ""
	err := pgx.BeginFunc(ctx, r.d.Pool, func(tx pgx.Tx) error {
		if _, err := r.d.Store.Lock(ctx, tx, c.ws); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		recorded, err := r.d.Store.InstanceRecorded(ctx, tx, c.inst)
		if err != nil || recorded {
			outcome = "changed"
			return err
		}
		if live, err := r.d.Store.LiveJobs(ctx, tx, riverjob.KindProvision, c.ws); err != nil || len(live) > 0 {
			outcome = "changed"
			return err
		}
		id, dup, err := r.d.Jobs.InsertInstanceTerminate(ctx, tx, c.ws, c.inst)
		if err != nil || dup {
			outcome = "dup"
			return err
		}
		outcome = "enqueued"
		return r.d.Store.AppendEvent(ctx, tx, store.Event{WorkspaceID: c.ws, Event: obs.EvOrphanFound, Actor: actorSweep,
			Fields: map[string]any{"instance_id": c.inst, "class": c.class, "launched_at": c.launched,
				"action": "instance_terminate", "instance_terminate_job_id": id}})
	})
	r.count(outcome, err, "terminate instance "+c.inst, true)
}
