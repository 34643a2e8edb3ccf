package worker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/cp/cpfake"
	"github.com/molecule-ai/provision-worker/internal/jobtest"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/jobs"
)

// An import racing a live instance_terminate (a forced sweep before the
// import queued the fleet's instances) is refused: otherwise the job's
// re-check, run before the import commits, terminates the instance and
// the row says running on nothing for good (review 13, R2).
func TestImport_RefusesAnInstanceALiveInstanceTerminateIsStopping(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := jobtest.New(t, jobtest.Config{NoStart: true})
	rows := liveFleet(e, 2)
	r := rows[0]
	_, err := e.Insert.Insert(ctx, jobs.InstanceTerminateArgs{WorkspaceID: r.WorkspaceID, InstanceID: r.InstanceID}, nil)
	require.NoError(t, err)

	tx, err := e.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	rep, err := jobs.Import(ctx, jobs.PgxDB(tx), rows, jobs.ImportOptions{})
	require.NoError(t, err)
	assert.Equal(t, 1, rep.Created, "the other row is imported: %+v", rep.Outcomes)
	require.Equal(t, jobs.ImportRefused, rep.Outcomes[0].Action,
		"imported an instance a live instance_terminate is about to stop: %+v", rep.Outcomes)
	require.Contains(t, rep.Outcomes[0].Reason, "instance_terminate")
	require.Contains(t, rep.Outcomes[0].Reason, "provision the workspace again", "the reason tells the operator what to do")

	e.Start()
	requireTerminatedByInstanceTerminate(t, e, r.InstanceID)
	require.NoError(t, tx.Commit(ctx))
	ws, err := store.MustFor("").Get(ctx, e.Pool, r.WorkspaceID)
	if err == nil {
		require.False(t, ws.Status == store.StatusRunning && len(e.CP.Live(r.WorkspaceID)) == 0,
			"the row says running on an instance that was terminated")
	} else {
		require.ErrorIs(t, err, store.ErrNotFound, "refused: no row")
	}
	require.Equal(t, store.StatusRunning, e.Workspace(rows[1].WorkspaceID).Status)
}

// A dry run reports the same refusal.
func TestImport_DryRunRefusesACondemnedInstanceToo(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := jobtest.New(t, jobtest.Config{NoStart: true})
	rows := liveFleet(e, 1)
	_, err := e.Insert.Insert(ctx, jobs.InstanceTerminateArgs{WorkspaceID: rows[0].WorkspaceID, InstanceID: rows[0].InstanceID}, nil)
	require.NoError(t, err)
	rep := importRows(t, e, rows, jobs.ImportOptions{DryRun: true})
	require.Equal(t, jobs.ImportRefused, rep.Outcomes[0].Action, "%+v", rep.Outcomes)
}

// ImportOptions.Live is the CP's list: a row whose instance the CP does
// not hold live for that workspace is refused (a dead instance imported
// is "running" for ever: no sweep ever judges a running row against the
// CP, review 13, R6); nil means not checked.
func TestImport_LiveRefusesInstancesTheCPDoesNotHoldForTheWorkspace(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{})
	alive, dead, elsewhere := uuid.NewString(), uuid.NewString(), uuid.NewString()
	other := uuid.NewString()
	aliveInst := e.OldInstance(alive)
	deadInst := e.CP.AddInstance(dead, cpfake.StateTerminated, time.Now().Add(-48*time.Hour)).InstanceID
	otherInst := e.OldInstance(other)
	gone := uuid.NewString()
	goneInst := e.CP.AddInstance(gone, cpfake.StateTerminated, time.Now().Add(-48*time.Hour)).InstanceID
	live := map[string]string{}
	for _, in := range e.CP.Instances() {
		if in.Live() {
			live[in.InstanceID] = in.WorkspaceID
		}
	}
	rows := []jobs.ImportRow{
		{WorkspaceID: alive, InstanceID: aliveInst, Runtime: "python", Tier: 1},
		{WorkspaceID: dead, InstanceID: deadInst, Runtime: "python", Tier: 1},
		{WorkspaceID: elsewhere, InstanceID: otherInst, Runtime: "python", Tier: 1},
		{WorkspaceID: gone, InstanceID: goneInst, Runtime: "python", Tier: 1, Removed: true},
	}
	tests := []struct {
		name   string
		live   map[string]string
		action []string
		reason []string
	}{
		{"checked", live, []string{jobs.ImportCreated, jobs.ImportRefused, jobs.ImportRefused, jobs.ImportRefused},
			[]string{"", "not live at the CP", "the CP tags this instance with workspace " + other, "nothing to stop"}},
		{"nil is not checked", nil, []string{jobs.ImportCreated, jobs.ImportCreated, jobs.ImportCreated, jobs.ImportCreated},
			[]string{"", "", "", ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := importRows(t, e, rows, jobs.ImportOptions{Live: tt.live, DryRun: true})
			for i, o := range rep.Outcomes {
				require.Equal(t, tt.action[i], o.Action, "row %d: %+v", i, o)
				require.True(t, strings.Contains(o.Reason, tt.reason[i]), "row %d: %q", i, o.Reason)
			}
		})
	}
	rep := importRows(t, e, rows, jobs.ImportOptions{Live: live})
	require.Equal(t, 1, rep.Created)
	for range 2 {
		sweepNow(t, e, testSweep(), jobs.OrphanSweepArgs{})
	}
	_, err := store.MustFor("").Get(context.Background(), e.Pool, dead)
	require.ErrorIs(t, err, store.ErrNotFound, "the dead instance's workspace was registered")
}

// A breaker opened by instances of unknown workspaces (after a cutover,
// most often rows the import left out, such as removed rows still
// holding an instance) says to re-run the import before any --force.
func TestSweep_BreakerOnUnknownWorkspacesHintsReRunTheImportFirst(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{})
	e.SeedHealthy(3)
	e.OldInstance(uuid.NewString())
	held := sweepNow(t, e, testSweep(), jobs.OrphanSweepArgs{})
	require.Equal(t, "breaker_open", held.CPSide)
	var hint string
	for _, line := range strings.Split(e.Logs.String(), "\n") {
		if strings.Contains(line, `"evt":"sweep.breaker_open"`) {
			hint = line
		}
	}
	require.NotEmpty(t, hint)
	imp, force := strings.Index(hint, "re-run the import"), strings.Index(hint, "--force")
	require.True(t, imp >= 0 && imp < force, "the hint names re-running the import before --force: %s", hint)
}
