package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/riverjob"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/internal/testdb"
)

const sweepDeadline = 15 * time.Minute

// seedRow inserts one workspace row and returns its id.
func seedRow(t *testing.T, pool *pgxpool.Pool, status, instanceID string, changedAgo time.Duration) string {
	t.Helper()
	id := uuid.NewString()
	var inst any
	if instanceID != "" {
		inst = instanceID
	}
	_, err := pool.Exec(context.Background(), `
		INSERT INTO provisioner.workspaces (id, status, desired_state, instance_id, provision_nonce, status_changed_at)
		VALUES ($1, $2, 'running', $3, 'n', now() - $4::interval)`,
		id, status, inst, fmt.Sprintf("%d seconds", int(changedAgo.Seconds())))
	require.NoError(t, err)
	return id
}

// seedRunning adds n running rows with instances, the bulk of a fleet
// that no sweep page may have to read.
func seedRunning(t *testing.T, pool *pgxpool.Pool, n int) {
	t.Helper()
	_, err := pool.Exec(context.Background(), `
		INSERT INTO provisioner.workspaces (id, status, desired_state, instance_id, provision_nonce)
		SELECT gen_random_uuid(), 'running', 'running', 'i-' || lpad(to_hex(g), 12, '0'), 'n'
		FROM generate_series(1, $1::int) g`, n)
	require.NoError(t, err)
	_, err = pool.Exec(context.Background(), `ANALYZE provisioner.workspaces`)
	require.NoError(t, err)
}

var instanceSeq int

func nextInstance() string {
	instanceSeq++
	return fmt.Sprintf("i-ab%010x", instanceSeq)
}

// TestSuspectRows_ReadsExactlyTheSuspects pins which rows are suspects
// (the sweep's spec) across every status, with and without an instance,
// fresh and past the deadline, paged in small pages.
func TestSuspectRows_ReadsExactlyTheSuspects(t *testing.T) {
	ctx := context.Background()
	pool, _ := testdb.NewPool(t)
	st := store.MustFor("")
	seedRunning(t, pool, 50)

	want := map[string]bool{}
	for _, c := range []struct {
		status   string
		instance bool
		old      bool
		suspect  bool
	}{
		{"running", true, true, false},
		{"running", false, true, false},
		{"provisioning", false, false, false},
		{"provisioning", true, false, false},
		{"provisioning", false, true, true},
		{"provisioning", true, true, true},
		{"stopping", true, false, true},
		{"stopping", false, true, true},
		{"stopped", true, false, true},
		{"stopped", false, true, false},
		{"removed", true, false, true},
		{"removed", false, true, false},
		{"failed", true, false, true},
		{"failed", false, true, false},
	} {
		inst, ago := "", time.Minute
		if c.instance {
			inst = nextInstance()
		}
		if c.old {
			ago = time.Hour
		}
		id := seedRow(t, pool, c.status, inst, ago)
		if c.suspect {
			want[id] = true
		}
	}

	got := map[string]bool{}
	after := ""
	for {
		page, err := st.SuspectRows(ctx, pool, sweepDeadline, after, 2)
		require.NoError(t, err)
		if len(page) == 0 {
			break
		}
		for _, s := range page {
			require.Greater(t, s.ID, after, "pages must come in id order")
			require.False(t, got[s.ID], "row %s read twice", s.ID)
			got[s.ID] = true
			after = s.ID
		}
	}
	require.Equal(t, want, got)
}

// TestSuspectRows_PagesThroughTheSuspectIndex: each page must read only
// suspects through workspaces_suspect_idx. Without it the planner walked
// the whole primary key in id order and read every row to test the
// filter (7 s per sweep at 1M rows), on the first page and on every
// keyset page, with custom and generic (prepared) plans alike.
func TestSuspectRows_PagesThroughTheSuspectIndex(t *testing.T) {
	ctx := context.Background()
	pool, _ := testdb.NewPool(t)
	st := store.MustFor("")
	seedRunning(t, pool, 5000)
	seedRow(t, pool, "stopping", nextInstance(), time.Minute)
	seedRow(t, pool, "provisioning", "", time.Hour)

	for _, c := range []struct {
		name, planMode string
		keyset         bool
	}{
		{"first page custom plan", "force_custom_plan", false},
		{"keyset page custom plan", "force_custom_plan", true},
		{"first page generic plan", "force_generic_plan", false},
		{"keyset page generic plan", "force_generic_plan", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn, err := pool.Acquire(ctx)
			require.NoError(t, err)
			defer conn.Release()
			_, err = conn.Exec(ctx, `SET plan_cache_mode = `+c.planMode)
			require.NoError(t, err)
			defer func() { _, _ = conn.Exec(ctx, `RESET plan_cache_mode`) }()
			args := []any{"15 minutes", 1000}
			if c.keyset {
				args = append(args, "00000000-0000-0000-0000-000000000000")
			}
			var plan string
			require.NoError(t, conn.QueryRow(ctx, `EXPLAIN (FORMAT JSON) `+store.SuspectPageSQL(st, c.keyset), args...).Scan(&plan))
			require.Contains(t, plan, `"Index Name": "workspaces_suspect_idx"`)
			require.NotContains(t, plan, `"Index Name": "workspaces_pkey"`)
		})
	}
}

// TestInstanceOwners_ReportsEachListedInstance pins what the CP side is
// told about each listed (instance, workspace) pair.
func TestInstanceOwners_ReportsEachListedInstance(t *testing.T) {
	ctx := context.Background()
	pool, _ := testdb.NewPool(t)
	st := store.MustFor("")

	ownInst := nextInstance()
	own := seedRow(t, pool, "running", ownInst, time.Hour)
	elsewhereInst := nextInstance()
	seedRow(t, pool, "running", elsewhereInst, time.Hour) // records it, listed under another workspace
	otherInst := nextInstance()
	other := seedRow(t, pool, "running", otherInst, time.Hour)
	bare := seedRow(t, pool, "stopped", "", time.Hour)
	orphanInst, condemnedInst := nextInstance(), nextInstance()
	_, err := pool.Exec(ctx, `INSERT INTO provisioner.river_job (kind, args, max_attempts, queue, state)
		VALUES ($1, jsonb_build_object('instance_id', $2::text), 5, 'terminate', 'available')`,
		riverjob.KindInstanceTerminate, condemnedInst)
	require.NoError(t, err)
	noRow := uuid.NewString()

	for _, c := range []struct {
		name      string
		instance  string
		workspace string
		want      store.InstanceOwner
	}{
		// A recorded instance is reported as recorded only: the sweep
		// leaves it alone, and its row is not read.
		{"recorded on its own row", ownInst, own, store.InstanceOwner{Recorded: true}},
		{"own row, upper-case workspace id", ownInst, strings.ToUpper(own), store.InstanceOwner{Recorded: true}},
		{"recorded on another row", elsewhereInst, other, store.InstanceOwner{Recorded: true}},
		{"recorded, listed under no row", ownInst, noRow, store.InstanceOwner{Recorded: true}},
		{"row without an instance", orphanInst, bare, store.InstanceOwner{WorkspaceExists: true, Status: "stopped"}},
		{"duplicate of a row recording another", orphanInst, other, store.InstanceOwner{WorkspaceExists: true, Status: "running", RowInstanceID: otherInst}},
		{"no row", orphanInst, noRow, store.InstanceOwner{}},
		{"no row, condemned", condemnedInst, noRow, store.InstanceOwner{Condemned: true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := st.InstanceOwners(ctx, pool, []string{c.instance}, []string{c.workspace})
			require.NoError(t, err)
			require.Equal(t, map[string]store.InstanceOwner{c.instance: c.want}, got)
		})
	}
}

// TestInstanceOwners_KeepsPairsTogetherWhenSorting: the pairs are sent
// in instance id order, so a page listed in another order must still
// report each instance against its own workspace.
func TestInstanceOwners_KeepsPairsTogetherWhenSorting(t *testing.T) {
	ctx := context.Background()
	pool, _ := testdb.NewPool(t)
	st := store.MustFor("")
	// Instance ids descending, each with a different answer.
	recInst, strayInst, bareInst, noRowInst := "i-f000000001", "i-e000000001", "i-d000000001", "i-c000000001"
	rowInst := "i-b000000001"
	seedRow(t, pool, "running", recInst, time.Hour)
	holder := seedRow(t, pool, "running", rowInst, time.Hour)
	bare := seedRow(t, pool, "stopped", "", time.Hour)
	got, err := st.InstanceOwners(ctx, pool,
		[]string{recInst, strayInst, bareInst, noRowInst},
		[]string{uuid.NewString(), holder, bare, uuid.NewString()})
	require.NoError(t, err)
	require.Equal(t, map[string]store.InstanceOwner{
		recInst:   {Recorded: true},
		strayInst: {WorkspaceExists: true, Status: "running", RowInstanceID: rowInst},
		bareInst:  {WorkspaceExists: true, Status: "stopped"},
		noRowInst: {},
	}, got)
}

// TestInstanceOwners_ReadsRowsOfUnrecordedInstancesOnly pins the page
// lookup's plan: whether an instance is recorded comes from an index-only
// scan of workspaces_instance_id_idx, and workspaces_pkey (a heap fetch
// per probe) is probed once per unrecorded instance, not once per listed
// one. Probing every listed instance's row cost 11-17 ms a page of 1,000
// at 1M rows, once the table outgrew shared_buffers.
func TestInstanceOwners_ReadsRowsOfUnrecordedInstancesOnly(t *testing.T) {
	ctx := context.Background()
	pool, _ := testdb.NewPool(t)
	st := store.MustFor("")
	seedRunning(t, pool, 5000)
	_, err := pool.Exec(ctx, `VACUUM ANALYZE provisioner.workspaces`)
	require.NoError(t, err)
	rows, err := pool.Query(ctx, `SELECT instance_id, id::text FROM provisioner.workspaces
		WHERE instance_id IS NOT NULL ORDER BY random() LIMIT 300`)
	require.NoError(t, err)
	var iids, wids []string
	for rows.Next() {
		var i, w string
		require.NoError(t, rows.Scan(&i, &w))
		iids, wids = append(iids, i), append(wids, w)
	}
	require.NoError(t, rows.Err())
	const unrecorded = 3
	for range unrecorded {
		iids, wids = append(iids, nextInstance()), append(wids, uuid.NewString())
	}
	// At this size the planner rightly hashes the whole table instead of
	// probing it; at 1M rows it probes, with custom and generic plans
	// alike (EXPLAIN (ANALYZE, BUFFERS) of a page of 1,000 there: about
	// 3,100 buffers, 40-60 read from outside shared_buffers, against about
	// 6,000 and 1,700-1,900 before). Seq scans off shows the probing plan
	// here.
	for _, planMode := range []string{"force_custom_plan", "force_generic_plan"} {
		t.Run(planMode, func(t *testing.T) {
			conn, err := pool.Acquire(ctx)
			require.NoError(t, err)
			defer conn.Release()
			_, err = conn.Exec(ctx, `SET enable_seqscan = off`)
			require.NoError(t, err)
			_, err = conn.Exec(ctx, `SET plan_cache_mode = `+planMode)
			require.NoError(t, err)
			defer func() { _, _ = conn.Exec(ctx, `RESET enable_seqscan; RESET plan_cache_mode`) }()
			var plan string
			require.NoError(t, conn.QueryRow(ctx, `EXPLAIN (ANALYZE, FORMAT JSON) `+store.InstanceOwnersSQL(st), iids, wids).Scan(&plan))
			var doc []struct{ Plan planNode }
			require.NoError(t, json.Unmarshal([]byte(plan), &doc))
			pkeyLoops, recordedProbe := 0, ""
			doc[0].Plan.walk(func(n planNode) {
				switch n.IndexName {
				case "workspaces_pkey":
					pkeyLoops += n.ActualLoops
				case "workspaces_instance_id_idx":
					recordedProbe = n.NodeType
				}
			})
			require.Equal(t, "Index Only Scan", recordedProbe, "plan: %s", plan)
			require.LessOrEqual(t, pkeyLoops, unrecorded, "the listed workspaces' rows are read for unrecorded instances only; plan: %s", plan)
		})
	}
}

// planNode is the part of an EXPLAIN (FORMAT JSON) node the plan tests read.
type planNode struct {
	NodeType    string     `json:"Node Type"`
	IndexName   string     `json:"Index Name"`
	ActualLoops int        `json:"Actual Loops"`
	Plans       []planNode `json:"Plans"`
}

func (n planNode) walk(f func(planNode)) {
	f(n)
	for _, c := range n.Plans {
		c.walk(f)
	}
}

// TestInstanceOwners_EncodesWorkspaceIDsWithoutWaste: a page of ids must
// not cost an allocated error per element. Sent as $2::uuid[] from Go
// strings, pgx tried and failed a binary uuid encoding per element before
// falling back to text: 1,000 ids cost about 9,000 allocations, against
// about 6,000 sent as text[] (most of them scanning the result).
func TestInstanceOwners_EncodesWorkspaceIDsWithoutWaste(t *testing.T) {
	ctx := context.Background()
	pool, _ := testdb.NewPool(t)
	st := store.MustFor("")
	const n = 1000
	ids, wss := make([]string, n), make([]string, n)
	for i := range n {
		ids[i], wss[i] = nextInstance(), uuid.NewString()
	}
	allocs := testing.AllocsPerRun(3, func() {
		got, err := st.InstanceOwners(ctx, pool, ids, wss)
		require.NoError(t, err)
		require.Len(t, got, n)
	})
	t.Logf("%.0f allocations for %d listed instances", allocs, n)
	require.Less(t, allocs, float64(15*n/2))
}
