package hostdb_test

import (
	"context"
	"database/sql"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/jobs"

	"example.com/platform/hostdb"
	"example.com/platform/internal/pgtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.Cleanup()
	os.Exit(code)
}

func migrated(t *testing.T) *sql.DB {
	t.Helper()
	db := pgtest.Open(t, pgtest.NewDB(t))
	_, err := hostdb.Migrate(context.Background(), db)
	require.NoError(t, err)
	return db
}

func TestMigrate_AppliesEachFileOnceInNameOrder(t *testing.T) {
	ctx := context.Background()
	db := pgtest.Open(t, pgtest.NewDB(t))
	applied, err := hostdb.Migrate(ctx, db)
	require.NoError(t, err)
	require.Equal(t, []string{"001_workspaces.sql", "002_workspace_secrets.sql"}, applied)

	again, err := hostdb.Migrate(ctx, db)
	require.NoError(t, err)
	require.Empty(t, again, "a second boot applies nothing")

	var recorded []string
	rows, err := db.Query(`SELECT filename FROM public.schema_migrations ORDER BY filename`)
	require.NoError(t, err)
	for rows.Next() {
		var f string
		require.NoError(t, rows.Scan(&f))
		recorded = append(recorded, f)
	}
	require.NoError(t, rows.Err())
	require.Equal(t, applied, recorded)

	var labels []string
	rows, err = db.Query(`SELECT unnest(enum_range(NULL::public.workspace_status))::text`)
	require.NoError(t, err)
	for rows.Next() {
		var l string
		require.NoError(t, rows.Scan(&l))
		labels = append(labels, l)
	}
	require.Equal(t, []string{"provisioning", "online", "offline", "degraded", "failed", "removed", "paused", "hibernated"}, labels)
}

// The files themselves are idempotent too: a database restored without
// schema_migrations is migrated again without failing.
func TestMigrate_FilesAreIdempotent(t *testing.T) {
	ctx := context.Background()
	db := migrated(t)
	_, err := db.Exec(`DELETE FROM public.schema_migrations`)
	require.NoError(t, err)
	applied, err := hostdb.Migrate(ctx, db)
	require.NoError(t, err)
	require.Len(t, applied, 2)
}

// Both migration tools run against one database, in either order, and
// neither touches the other's objects: the worker's workspaces table is
// in its own schema, the host's in public.
func TestMigrate_LivesBesideTheWorkersSchema(t *testing.T) {
	for _, workerFirst := range []bool{true, false} {
		name := map[bool]string{true: "worker first", false: "host first"}[workerFirst]
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			url := pgtest.NewDB(t)
			db := pgtest.Open(t, url)
			if workerFirst {
				pgtest.MigrateWorker(t, url)
			}
			_, err := hostdb.Migrate(ctx, db)
			require.NoError(t, err)
			if !workerFirst {
				pgtest.MigrateWorker(t, url)
			}
			var tables []string
			rows, err := db.Query(`SELECT table_schema || '.' || table_name FROM information_schema.tables
				WHERE table_name IN ('workspaces', 'river_job', 'schema_migrations', 'workspace_secrets') ORDER BY 1`)
			require.NoError(t, err)
			for rows.Next() {
				var s string
				require.NoError(t, rows.Scan(&s))
				tables = append(tables, s)
			}
			require.Equal(t, []string{"provisioner.river_job", "provisioner.workspaces",
				"public.schema_migrations", "public.workspace_secrets", "public.workspaces"}, tables)
		})
	}
}

func insert(t *testing.T, db *sql.DB, id, parent string) {
	t.Helper()
	tx, err := db.Begin()
	require.NoError(t, err)
	require.NoError(t, hostdb.Insert(context.Background(), tx, hostdb.Workspace{ID: id, Name: "w", Runtime: "python", ParentID: parent}))
	require.NoError(t, tx.Commit())
}

func setStatus(t *testing.T, db *sql.DB, id, status, instance string) {
	t.Helper()
	_, err := db.Exec(`UPDATE public.workspaces SET status = $2, instance_id = NULLIF($3, '') WHERE id = $1`, id, status, instance)
	require.NoError(t, err)
}

const (
	root  = "00000000-0000-4000-8000-000000000001"
	a     = "00000000-0000-4000-8000-000000000002"
	a1    = "00000000-0000-4000-8000-000000000003"
	b     = "00000000-0000-4000-8000-000000000004"
	b1    = "00000000-0000-4000-8000-000000000005"
	other = "00000000-0000-4000-8000-000000000006"
)

// The subtree is the root and every descendant not already removed; a
// removed branch (deleted before) is neither returned nor descended into,
// and another tree is untouched. instance_id stays for the worker to clear.
func TestMarkSubtreeRemoved_TakesTheLiveSubtreeOnly(t *testing.T) {
	ctx := context.Background()
	db := migrated(t)
	insert(t, db, root, "")
	insert(t, db, a, root)
	insert(t, db, a1, a)
	insert(t, db, b, root)
	insert(t, db, b1, b)
	insert(t, db, other, "")
	setStatus(t, db, a1, "online", "i-0123456789abcdef0")
	setStatus(t, db, b, "removed", "")
	setStatus(t, db, b1, "removed", "")

	tx, err := db.Begin()
	require.NoError(t, err)
	ids, err := hostdb.MarkSubtreeRemoved(ctx, tx, root)
	require.NoError(t, err)
	require.NoError(t, tx.Commit())
	require.Equal(t, []string{root, a, a1}, ids)

	for id, want := range map[string]string{root: "removed", a: "removed", a1: "removed", other: "provisioning"} {
		ws, err := hostdb.Get(ctx, db, id)
		require.NoError(t, err)
		require.Equal(t, want, ws.Status, id)
	}
	ws, err := hostdb.Get(ctx, db, a1)
	require.NoError(t, err)
	require.Equal(t, "i-0123456789abcdef0", ws.InstanceID, "cleared only when the worker reports it gone")
}

func TestInsert_RefusesAMissingOrRemovedParent(t *testing.T) {
	db := migrated(t)
	insert(t, db, root, "")
	setStatus(t, db, root, "removed", "")
	for parent, want := range map[string]error{root: hostdb.ErrRemoved, other: hostdb.ErrNotFound} {
		tx, err := db.Begin()
		require.NoError(t, err)
		err = hostdb.Insert(context.Background(), tx, hostdb.Workspace{ID: a, Name: "w", Runtime: "python", ParentID: parent})
		require.ErrorIs(t, err, want)
		require.NoError(t, tx.Rollback())
	}
}

func TestApplyOutcome_WritesTheHostsRow(t *testing.T) {
	const inst = "i-0123456789abcdef0"
	cases := []struct {
		name           string
		outcome        jobs.Outcome
		status, instID string
		lastErr        string
	}{
		{"running", jobs.Outcome{Status: jobs.StatusRunning, InstanceID: inst}, "online", inst, ""},
		{"failed", jobs.Outcome{Status: jobs.StatusFailed, Message: jobs.GenericFailure}, "failed", "i-00000000000000001", jobs.GenericFailure},
		{"failed without message", jobs.Outcome{Status: jobs.StatusFailed}, "failed", "i-00000000000000001", jobs.GenericFailure},
		{"stopped", jobs.Outcome{Status: jobs.StatusStopped}, "offline", "", "earlier"},
		{"removed", jobs.Outcome{Status: jobs.StatusRemoved}, "removed", "", "earlier"},
		{"restarting", jobs.Outcome{Status: jobs.StatusProvisioning}, "provisioning", "", "earlier"},
	}
	db := migrated(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			_, err := db.Exec(`DELETE FROM public.workspaces`)
			require.NoError(t, err)
			insert(t, db, root, "")
			_, err = db.Exec(`UPDATE public.workspaces SET instance_id = 'i-00000000000000001', last_sample_error = 'earlier'`)
			require.NoError(t, err)
			tc.outcome.WorkspaceID = root
			tx, err := db.Begin()
			require.NoError(t, err)
			require.NoError(t, hostdb.ApplyOutcome(ctx, tx, tc.outcome))
			require.NoError(t, tx.Commit())
			ws, err := hostdb.Get(ctx, db, root)
			require.NoError(t, err)
			require.Equal(t, tc.status, ws.Status)
			require.Equal(t, tc.instID, ws.InstanceID)
			require.Equal(t, tc.lastErr, ws.LastSampleError)
		})
	}
}

// A stop must never wait on the host's bookkeeping: no host row is not an
// error (an error would roll back the worker's completion and retry).
func TestApplyOutcome_MissingRowIsNotAnError(t *testing.T) {
	db := migrated(t)
	require.NoError(t, hostdb.ApplyOutcome(context.Background(), db, jobs.Outcome{WorkspaceID: other, Status: jobs.StatusRemoved}))
	require.Error(t, hostdb.ApplyOutcome(context.Background(), db, jobs.Outcome{WorkspaceID: other, Status: jobs.StatusStopping}))
}
