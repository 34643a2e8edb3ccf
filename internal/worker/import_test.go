package worker_test

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/jobtest"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/jobs"
)

// liveFleet adds n running instances to the fake CP, launched an hour
// ago, as a host's fleet that predates the worker, and returns them as
// import rows. The database knows none of them.
func liveFleet(e *jobtest.Env, n int) []jobs.ImportRow {
	rows := make([]jobs.ImportRow, n)
	for i := range rows {
		id := uuid.NewString()
		rows[i] = jobs.ImportRow{WorkspaceID: id, InstanceID: e.OldInstance(id), Runtime: "python", Tier: 2}
	}
	return rows
}

func importRows(t *testing.T, e *jobtest.Env, rows []jobs.ImportRow, opts jobs.ImportOptions) jobs.ImportReport {
	t.Helper()
	var rep jobs.ImportReport
	require.NoError(t, e.Tx(func(tx pgx.Tx) (err error) {
		rep, err = jobs.Import(context.Background(), jobs.PgxDB(tx), rows, opts)
		return err
	}))
	require.Len(t, rep.Outcomes, len(rows))
	return rep
}

// importCounts is every row and event of the worker's tables and every
// job, as one comparable string.
func importCounts(t *testing.T, e *jobtest.Env) string {
	t.Helper()
	var s string
	require.NoError(t, e.Pool.QueryRow(context.Background(), `SELECT
		(SELECT count(*) FROM workspaces)::text || '/' || (SELECT count(*) FROM workspace_env)::text || '/' ||
		(SELECT count(*) FROM workspace_events)::text || '/' || (SELECT count(*) FROM river_job)::text || '/' ||
		coalesce((SELECT string_agg(id::text || status || coalesce(instance_id, '') || generation::text, ',' ORDER BY id)
			FROM workspaces), '')`).Scan(&s))
	return s
}

// The cutover's acceptance test (issue 13, 4): a fleet that predates the
// worker opens the sweep's breaker, every instance an unknown workspace's;
// after the import the same sweep finds no stray among them, the breaker
// stays closed, and nothing is terminated.
func TestImport_SweepSeesTheImportedFleetAsOwned(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{})
	const n = 25
	rows := liveFleet(e, n)

	before := sweepNow(t, e, testSweep(), jobs.OrphanSweepArgs{DryRun: true})
	require.True(t, before.BreakerOpen, "without the import the fleet must look like strays: %+v", before)
	require.Equal(t, n, before.Orphans["unknown_workspace"])

	rep := importRows(t, e, rows, jobs.ImportOptions{})
	require.Equal(t, n, rep.Created, "%+v", rep)

	after := sweepNow(t, e, testSweep(), jobs.OrphanSweepArgs{})
	require.False(t, after.BreakerOpen, "%+v", after)
	require.Equal(t, "ok", after.CPSide)
	require.Empty(t, after.Orphans, "an imported instance was seen as a stray")
	require.Zero(t, after.Enqueued)
	require.Equal(t, n, after.LiveInstances)
	require.Empty(t, e.JobsOfKind(jobs.KindInstanceTerminate))
	require.Len(t, e.CP.Live(""), n, "the sweep terminated an imported instance")

	for _, r := range rows {
		ws := e.Workspace(r.WorkspaceID)
		require.Equal(t, store.StatusRunning, ws.Status)
		require.Equal(t, store.DesiredRunning, ws.Desired)
		require.Equal(t, r.InstanceID, ws.InstanceID)
		require.Equal(t, int64(1), ws.Generation)
		require.NotEmpty(t, ws.Nonce)
		require.Equal(t, "python", ws.Runtime)
		require.Equal(t, 2, ws.Tier)
	}
	evs, err := store.MustFor("").Events(context.Background(), e.Pool, rows[0].WorkspaceID)
	require.NoError(t, err)
	require.Len(t, evs, 1)
	require.Equal(t, "workspace.imported", evs[0].Event)
	require.Equal(t, "import", evs[0].Actor)
	require.Equal(t, rows[0].InstanceID, evs[0].Fields["instance_id"])
}

func TestImport_ReRunIsUnchanged(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{NoStart: true})
	rows := liveFleet(e, 5)
	require.Equal(t, 5, importRows(t, e, rows, jobs.ImportOptions{Actor: "cutover"}).Created)
	counts := importCounts(t, e)

	// The same rows again, one with its id in upper case: ids are
	// compared in their canonical form.
	rows[0].WorkspaceID = strings.ToUpper(rows[0].WorkspaceID)
	rep := importRows(t, e, rows, jobs.ImportOptions{Actor: "cutover"})

	require.Equal(t, 5, rep.Unchanged, "%+v", rep)
	require.Zero(t, rep.Created+rep.Refused)
	for _, o := range rep.Outcomes {
		require.Equal(t, jobs.ImportUnchanged, o.Action)
		require.Empty(t, o.Reason)
	}
	require.Equal(t, counts, importCounts(t, e), "a re-run wrote something")
}

func TestImport_DryRunDecidesTheSameAndChangesNothing(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{NoStart: true})
	rows := liveFleet(e, 4)
	rows = append(rows, jobs.ImportRow{WorkspaceID: uuid.NewString(), InstanceID: "i-NOTHEX"})
	empty := importCounts(t, e)

	dry := importRows(t, e, rows, jobs.ImportOptions{DryRun: true})

	require.Equal(t, empty, importCounts(t, e), "a dry run wrote something")
	require.Equal(t, [3]int{4, 0, 1}, [3]int{dry.Created, dry.Unchanged, dry.Refused})
	real := importRows(t, e, rows, jobs.ImportOptions{})
	require.Equal(t, dry, real, "a dry run must decide every row as the import does")

	imported := importCounts(t, e)
	again := importRows(t, e, rows, jobs.ImportOptions{DryRun: true})
	require.Equal(t, [3]int{0, 4, 1}, [3]int{again.Created, again.Unchanged, again.Refused})
	require.Equal(t, imported, importCounts(t, e))
}

// Each refusal is per row, says why, and leaves the row's workspace as
// it was; the good row beside it is imported all the same.
func TestImport_RefusesEachBadRowAndImportsTheRest(t *testing.T) {
	t.Parallel()
	const inst = "i-0123456789abcdef0"
	for _, tc := range []struct {
		name   string
		seed   func(e *jobtest.Env, ws string) // existing state
		rows   func(ws string) []jobs.ImportRow
		reason string
	}{
		{"malformed instance id", nil, func(ws string) []jobs.ImportRow {
			return []jobs.ImportRow{{WorkspaceID: ws, InstanceID: "i-0123ABCD"}}
		}, "instance id must match"},
		{"empty instance id", nil, func(ws string) []jobs.ImportRow {
			return []jobs.ImportRow{{WorkspaceID: ws}}
		}, "instance id must match"},
		{"malformed workspace id", nil, func(string) []jobs.ImportRow {
			return []jobs.ImportRow{{WorkspaceID: "ws-1", InstanceID: inst}}
		}, "workspace id must be a UUID"},
		{"tier out of range", nil, func(ws string) []jobs.ImportRow {
			return []jobs.ImportRow{{WorkspaceID: ws, InstanceID: inst, Tier: 9}}
		}, "tier must be between 0 and 4"},
		{"malformed runtime", nil, func(ws string) []jobs.ImportRow {
			return []jobs.ImportRow{{WorkspaceID: ws, InstanceID: inst, Runtime: "py thon"}}
		}, "runtime must be"},
		{"instance owned by another workspace", func(e *jobtest.Env, _ string) {
			e.SeedRows(jobtest.Row{Status: store.StatusRunning, InstanceID: inst})
		}, func(ws string) []jobs.ImportRow {
			return []jobs.ImportRow{{WorkspaceID: ws, InstanceID: inst}}
		}, "instance is already owned by workspace "},
		{"instance given twice in the input", nil, func(ws string) []jobs.ImportRow {
			return []jobs.ImportRow{{WorkspaceID: ws, InstanceID: inst}, {WorkspaceID: uuid.NewString(), InstanceID: inst}}
		}, "instance " + inst + " is given for 2 workspaces in this input"},
		{"workspace given twice with different values", nil, func(ws string) []jobs.ImportRow {
			return []jobs.ImportRow{{WorkspaceID: ws, InstanceID: inst}, {WorkspaceID: ws, InstanceID: inst, Tier: 1}}
		}, "workspace is given 2 times in this input, with different values"},
		{"workspace registered with another instance", func(e *jobtest.Env, ws string) {
			e.SeedRows(jobtest.Row{ID: ws, Status: store.StatusRunning, InstanceID: "i-00000000aaaaaaaa"})
		}, func(ws string) []jobs.ImportRow {
			return []jobs.ImportRow{{WorkspaceID: ws, InstanceID: inst}}
		}, "workspace is already registered with instance i-00000000aaaaaaaa (running)"},
		{"workspace registered with this instance but stopping", func(e *jobtest.Env, ws string) {
			e.SeedRows(jobtest.Row{ID: ws, Status: store.StatusStopping, Desired: store.DesiredStopped, InstanceID: inst})
		}, func(ws string) []jobs.ImportRow {
			return []jobs.ImportRow{{WorkspaceID: ws, InstanceID: inst}}
		}, "workspace is already registered with this instance, but stopping, not running"},
		{"workspace registered without an instance", func(e *jobtest.Env, ws string) {
			e.SeedRows(jobtest.Row{ID: ws, Status: store.StatusStopped, Desired: store.DesiredStopped})
		}, func(ws string) []jobs.ImportRow {
			return []jobs.ImportRow{{WorkspaceID: ws, InstanceID: inst}}
		}, "workspace is already registered, stopped, without an instance"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := jobtest.New(t, jobtest.Config{NoStart: true})
			ws := uuid.NewString()
			if tc.seed != nil {
				tc.seed(e, ws)
			}
			good := jobs.ImportRow{WorkspaceID: uuid.NewString(), InstanceID: "i-0fedcba987654321f"}
			bad := tc.rows(ws)
			seeded := countOf(t, e, "workspaces")

			rep := importRows(t, e, append([]jobs.ImportRow{good}, bad...), jobs.ImportOptions{})

			require.Equal(t, jobs.ImportCreated, rep.Outcomes[0].Action, "%+v", rep.Outcomes[0])
			require.Equal(t, 1, rep.Created)
			require.Equal(t, len(bad), rep.Refused, "%+v", rep)
			for _, o := range rep.Outcomes[1:] {
				require.Equal(t, jobs.ImportRefused, o.Action)
				require.Contains(t, o.Reason, tc.reason)
			}
			require.Equal(t, good.InstanceID, e.Workspace(good.WorkspaceID).InstanceID)
			// Only the good row and its event were written.
			require.Equal(t, seeded+1, countOf(t, e, "workspaces"))
			require.Equal(t, 1, countOf(t, e, "workspace_events"))
		})
	}
}

func countOf(t *testing.T, e *jobtest.Env, table string) int {
	t.Helper()
	var n int
	require.NoError(t, e.Pool.QueryRow(context.Background(), `SELECT count(*) FROM `+table).Scan(&n))
	return n
}

// Identical repeats of a row are harmless: the first registers it, the
// rest report it unchanged.
func TestImport_IdenticalRepeatIsUnchanged(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{NoStart: true})
	r := liveFleet(e, 1)[0]
	rep := importRows(t, e, []jobs.ImportRow{r, r}, jobs.ImportOptions{})
	require.Equal(t, []string{jobs.ImportCreated, jobs.ImportUnchanged}, []string{rep.Outcomes[0].Action, rep.Outcomes[1].Action})
	require.Equal(t, [3]int{1, 1, 0}, [3]int{rep.Created, rep.Unchanged, rep.Refused})
}

// After the import the worker owns the workspace like any other: a stop
// request reaches its instance through the CP and the row ends stopped.
func TestImport_LaterTerminateStopsTheImportedInstance(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{})
	rows := liveFleet(e, 2)
	require.Equal(t, 2, importRows(t, e, rows, jobs.ImportOptions{}).Created)

	res := e.Terminate(rows[0].WorkspaceID)
	require.Equal(t, jobs.ActionStopping, res.Action)
	ws := e.WaitStatus(rows[0].WorkspaceID, store.StatusStopped)

	require.Empty(t, ws.InstanceID)
	live := liveIDs(e)
	require.False(t, live[rows[0].InstanceID], "the imported instance still runs after its stop")
	require.True(t, live[rows[1].InstanceID], "the other imported instance must keep running")
}

// The host imports from its own *sql.Tx on lib/pq as well as from pgx.
func TestImport_RunsInTheHostsSQLTx(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{NoStart: true})
	rows := liveFleet(e, 3)
	db, err := sql.Open("postgres", e.DBURL)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	ctx := context.Background()
	tx, err := db.BeginTx(ctx, nil)
	require.NoError(t, err)
	rep, err := jobs.Import(ctx, jobs.SQLDB(tx), rows, jobs.ImportOptions{})
	require.NoError(t, err)
	require.NoError(t, tx.Commit())
	require.Equal(t, 3, rep.Created)
	for _, r := range rows {
		require.Equal(t, r.InstanceID, e.Workspace(r.WorkspaceID).InstanceID)
	}
}

func TestImport_RefusesBadOptions(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{NoStart: true})
	ctx := context.Background()
	_, err := jobs.Import(ctx, jobs.PgxDB(e.Pool), nil, jobs.ImportOptions{Actor: "a\x00b"})
	require.ErrorIs(t, err, jobs.ErrInvalidInput)
	_, err = jobs.Import(ctx, jobs.PgxDB(e.Pool), nil, jobs.ImportOptions{Schema: "public"})
	require.Error(t, err)
	_, err = jobs.Import(ctx, jobs.DB{}, nil, jobs.ImportOptions{})
	require.Error(t, err)
}

// An import is three statements whatever its size (two reads, one write):
// a fleet of 10,000 must not cost 30,000 round trips.
func TestImport_StatementsDoNotGrowWithTheBatch(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{NoStart: true})
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(e.Pool.Config().ConnString())
	require.NoError(t, err)
	counter := &statementCounter{}
	cfg.ConnConfig.Tracer = counter
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	statements := func(n int) int64 {
		rows := make([]jobs.ImportRow, n)
		for i := range rows {
			rows[i] = jobs.ImportRow{WorkspaceID: uuid.NewString(), InstanceID: fmt.Sprintf("i-%017x", rand.Uint64()>>4)}
		}
		tx, err := pool.Begin(ctx)
		require.NoError(t, err)
		defer func() { _ = tx.Rollback(ctx) }()
		before := counter.n.Load()
		rep, err := jobs.Import(ctx, jobs.PgxDB(tx), rows, jobs.ImportOptions{})
		require.NoError(t, err)
		require.Equal(t, n, rep.Created)
		return counter.n.Load() - before
	}
	require.Equal(t, int64(3), statements(5), "two reads and one write")
	require.Equal(t, int64(3), statements(2000))
}

// BenchmarkImport_10000 is one cutover of a 10,000-instance fleet, in one
// transaction (rolled back, so every iteration imports afresh).
func BenchmarkImport_10000(b *testing.B) {
	e := jobtest.New(b, jobtest.Config{NoStart: true})
	ctx := context.Background()
	rows := make([]jobs.ImportRow, 10_000)
	for i := range rows {
		rows[i] = jobs.ImportRow{WorkspaceID: uuid.NewString(), InstanceID: fmt.Sprintf("i-%017x", rand.Uint64()>>4),
			Runtime: "python", Tier: 1}
	}
	b.ResetTimer()
	for range b.N {
		tx, err := e.Pool.Begin(ctx)
		if err != nil {
			b.Fatal(err)
		}
		rep, err := jobs.Import(ctx, jobs.PgxDB(tx), rows, jobs.ImportOptions{})
		if err != nil || rep.Created != len(rows) {
			b.Fatalf("import: %v, %+v", err, rep.Created)
		}
		_ = tx.Rollback(ctx)
	}
}

// An import that decided "create" while another transaction was
// registering the same workspace (an import, or a handler's provision)
// must not overwrite it or fail the batch: once that transaction commits,
// the row is refused with a reason and the rest is imported.
func TestImport_ConcurrentRegistrationIsRefusedNotOverwritten(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{NoStart: true})
	ctx := context.Background()
	rows := liveFleet(e, 2)
	first, err := e.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = first.Rollback(ctx) }()
	_, err = jobs.Import(ctx, jobs.PgxDB(first), rows[:1], jobs.ImportOptions{Actor: "first"})
	require.NoError(t, err)

	type result struct {
		rep jobs.ImportReport
		err error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		r.err = pgx.BeginFunc(ctx, e.Pool, func(tx pgx.Tx) (err error) {
			r.rep, err = jobs.Import(ctx, jobs.PgxDB(tx), rows, jobs.ImportOptions{Actor: "second"})
			return err
		})
		done <- r
	}()
	// The second import waits on the first's uncommitted row; Postgres
	// gives no signal for that but pg_stat_activity.
	e.WaitFor("the second import to wait on the first's row", func() bool {
		var waiting bool
		require.NoError(t, e.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock')`).Scan(&waiting))
		return waiting
	})
	require.NoError(t, first.Commit(ctx))
	r := <-done

	require.NoError(t, r.err)
	require.Equal(t, jobs.ImportRefused, r.rep.Outcomes[0].Action)
	require.Contains(t, r.rep.Outcomes[0].Reason, "registered by a concurrent transaction")
	require.Equal(t, jobs.ImportCreated, r.rep.Outcomes[1].Action)
	evs, err := store.MustFor("").Events(ctx, e.Pool, rows[0].WorkspaceID)
	require.NoError(t, err)
	require.Len(t, evs, 1)
	require.Equal(t, "first", evs[0].Actor)
}
