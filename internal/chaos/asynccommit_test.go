package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/cp/cpfake"
	"github.com/molecule-ai/provision-worker/internal/obs"
)

// With COMPLETION_SYNCHRONOUS_COMMIT=off, Postgres itself crashes
// (an immediate stop: no checkpoint, WAL still in shared memory is gone)
// twice while provisions and then terminates complete, and comes back.
// The two worker processes are not restarted: they reconnect. Commits the
// server had acknowledged may be lost, as the opt-in allows; each takes
// the row change and the job's completion with it (invariant
// "completion-checked commit"), the job is back to running, River's
// rescuer re-runs it, and the re-run adopts (provision) or confirms
// (terminate). Nothing may leak (every live CP instance is the one a
// running row records), nothing may be duplicated (one launch per
// workspace), nothing may be lost (every row reaches its final state, no
// job discarded), and no synchronously committed write may be missing
// (the provision.start notes a re-run adopts by). The commits actually
// lost are counted from the workers' logs (a timeline line is logged only
// after its commit returned) against the table, and printed.
func TestDBFault_AsyncCompletionCommitSurvivesPostgresCrash(t *testing.T) {
	began := time.Now()
	// wal_writer_delay at its maximum: an asynchronous commit then reaches
	// disk only when a later synchronous commit (River's fetch, its leader
	// election, an enqueue) or a full WAL page flushes it, so a crash
	// mid-stream can lose the last ones, which is the case to cover.
	pg := startPrivatePostgres(t, "wal_writer_delay=10000")
	w := newWorldAt(t, pg.url, cpfake.Options{Latency: 20 * time.Millisecond},
		map[string]string{"COMPLETION_SYNCHRONOUS_COMMIT": "off"})
	procs := []*workerProc{w.startWorker("async-w0"), w.startWorker("async-w1")}
	first, second := newIDs(20), newIDs(20)
	n := len(first) + len(second)

	w.enqueueAll("provision", first, 8)
	_, err := w.drainWhere(`SELECT count(*) FROM workspaces WHERE status <> 'running'`, time.Minute)
	require.NoError(t, err)
	// The stream: the second half's provisions and the first half's
	// terminates complete side by side (each kind has its own queue) when
	// the server crashes. One crash: a commit lost after River's completer
	// had already passed it waits for River's rescuer, which looks every
	// 30 s, and the package's run time is shared.
	w.enqueueAll("provision", second, 8)
	w.enqueueAll("terminate", first, 8)
	// The fake CP is in this process, but only its provision route has a
	// hook and the terminate route none: polling its counts, 5 ms apart.
	waitFor(t, func() bool {
		return w.cp.Stats().Launched >= len(first)+len(second)/2 && w.cp.LiveCount() <= len(second)+len(first)/2
	}, "half the second provisions launched and half the first instances stopped")
	pg.crash(t)
	crashed := time.Since(began)
	settled := fmt.Sprintf(`SELECT count(*) FROM workspaces WHERE CASE WHEN id = ANY('{%s}'::uuid[])
		THEN status <> 'running' ELSE status <> 'stopped' OR instance_id IS NOT NULL END`, strings.Join(second, ","))
	_, err = w.drainWhere(settled, 90*time.Second)
	if err != nil {
		w.dumpUnfinished(t)
	}
	require.NoError(t, err)
	w.requireFleetIsTheRows(t)
	t.Logf("crashed %s after the start; the stream settled %s after the crash", crashed.Round(100*time.Millisecond),
		(time.Since(began) - crashed).Round(100*time.Millisecond))

	w.enqueueAll("terminate", second, 8)
	c, err := w.drain(time.Minute)
	if err != nil {
		w.dumpUnfinished(t)
	}
	require.NoError(t, err)
	require.Zero(t, c.discarded, "no job discarded")
	require.Zero(t, w.cp.LiveCount(), "nothing leaked")
	st := w.cp.Stats()
	require.Equal(t, n, st.Launched, "one launch per workspace: a re-run adopts")
	require.Zero(t, st.Duplicates)
	require.LessOrEqual(t, st.MaxLiveForWorkspace, 1)
	for _, p := range procs {
		require.True(t, p.running(), "%s exited when Postgres crashed", p.name)
	}

	lost := w.lostCommits(t, procs)
	require.GreaterOrEqual(t, lost["checked"], 3*n, "the workers' timeline lines were read")
	require.Zero(t, lost[obs.EvProvisionStart], "a provision.start note is committed synchronously: never lost")
	t.Logf("async completion commits lost to the crashes and re-run: %d (by event: %v); ran %s",
		lost[obs.EvProvisionStarted]+lost[obs.EvProvisionAdopted]+lost[obs.EvProvisionStopped], lost, time.Since(began).Round(time.Second))
}

// waitFor polls cond every 5 ms for up to a minute.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		require.True(t, time.Now().Before(deadline), "waiting for %s", what)
		time.Sleep(5 * time.Millisecond) // no signal to wait on (see the caller)
	}
}

// requireFleetIsTheRows checks that the CP's live instances are exactly
// the ones the running rows record: one per row, none besides.
func (w *world) requireFleetIsTheRows(t *testing.T) {
	t.Helper()
	rows, err := w.pool.Query(context.Background(),
		`SELECT id::text, coalesce(instance_id, '') FROM workspaces WHERE status = 'running'`)
	require.NoError(t, err)
	recorded := map[string]string{}
	for rows.Next() {
		var ws, inst string
		require.NoError(t, rows.Scan(&ws, &inst))
		recorded[ws] = inst
	}
	require.NoError(t, rows.Err())
	live := map[string]string{}
	for _, in := range w.cp.Live("") {
		_, dup := live[in.WorkspaceID]
		require.False(t, dup, "two live instances for workspace %s", in.WorkspaceID)
		live[in.WorkspaceID] = in.InstanceID
	}
	require.Equal(t, recorded, live, "the CP's live instances are the running rows' instances")
}

// timelineEvents are the timeline events a provision or terminate writes:
// provision.start on its own (synchronous), the others in the completing
// transaction.
var timelineEvents = map[string]bool{
	obs.EvProvisionStart: true, obs.EvProvisionStarted: true, obs.EvProvisionAdopted: true, obs.EvProvisionStopped: true,
}

// lostCommits counts, by event, the timeline lines the workers logged
// (each after its transaction's COMMIT returned) that the table does not
// hold: commits Postgres acknowledged and lost ("checked": the lines
// looked at).
func (w *world) lostCommits(t *testing.T, procs []*workerProc) map[string]int {
	t.Helper()
	lost := map[string]int{}
	for _, p := range procs {
		f, err := os.Open(p.log)
		require.NoError(t, err)
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var line struct {
				Evt         string `json:"evt"`
				WorkspaceID string `json:"workspace_id"`
				JobID       int64  `json:"job_id"`
				Attempt     int    `json:"attempt"`
			}
			if json.Unmarshal(sc.Bytes(), &line) != nil || !timelineEvents[line.Evt] || line.JobID == 0 {
				continue
			}
			var held bool
			require.NoError(t, w.pool.QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM workspace_events
				WHERE workspace_id = $1 AND job_id = $2 AND attempt = $3 AND event = $4)`,
				line.WorkspaceID, line.JobID, line.Attempt, line.Evt).Scan(&held))
			lost["checked"]++
			if !held {
				lost[line.Evt]++
			}
		}
		require.NoError(t, sc.Err())
		require.NoError(t, f.Close())
	}
	return lost
}

// dumpUnfinished logs the rows not in a final state and their jobs: what
// a failed drain needs to be read.
func (w *world) dumpUnfinished(t *testing.T) {
	t.Helper()
	rows, err := w.pool.Query(context.Background(), `
		SELECT w.id::text, w.status, coalesce(w.instance_id, ''), j.id, j.kind, j.state::text, j.attempt,
			coalesce(j.finalized_at::text, ''), coalesce(j.errors::text, '')
		FROM workspaces w JOIN river_job j ON j.args->>'workspace_id' = w.id::text
		WHERE w.status NOT IN ('running', 'stopped') OR w.instance_id IS NOT NULL AND w.status <> 'running'
		ORDER BY w.id, j.id`)
	if err != nil {
		t.Logf("dump: %v", err)
		return
	}
	defer rows.Close()
	for rows.Next() {
		var ws, status, inst, kind, state, fin, errs string
		var id int64
		var attempt int
		if err := rows.Scan(&ws, &status, &inst, &id, &kind, &state, &attempt, &fin, &errs); err != nil {
			t.Logf("dump: %v", err)
			return
		}
		t.Logf("unfinished: workspace %s %s %q; job %d %s %s attempt %d finalized %q errors %.300s",
			ws, status, inst, id, kind, state, attempt, fin, errs)
	}
}
