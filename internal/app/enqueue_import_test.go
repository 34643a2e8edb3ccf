package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/app"
	"github.com/molecule-ai/provision-worker/internal/jobtest"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/internal/sweep"
	"github.com/molecule-ai/provision-worker/internal/worker"
	"github.com/molecule-ai/provision-worker/jobs"
)

// importOut is what `enqueue import` prints.
type importOut struct {
	DryRun    bool     `json:"dry_run"`
	Created   int      `json:"created"`
	Unchanged int      `json:"unchanged"`
	Refused   int      `json:"refused"`
	Stops     []string `json:"stops"`
	Refusals  []struct {
		Line        int    `json:"line"`
		Row         int    `json:"row"`
		WorkspaceID string `json:"workspace_id"`
		InstanceID  string `json:"instance_id"`
		Reason      string `json:"reason"`
	} `json:"refusals"`
}

// runImport runs `enqueue import args...` in-process with stdin.
func runImport(t *testing.T, env *jobtest.Env, stdin string, args ...string) (importOut, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	vars := consoleVars(env) // the CP's settings: the import reads its list
	vars["DATABASE_URL"] = env.DBURL
	getenv := func(k string) string { return vars[k] }
	err := app.RunEnqueue(context.Background(), app.CLI{In: strings.NewReader(stdin), Out: &out, Err: &errOut, Getenv: getenv},
		append([]string{"import"}, args...))
	var res importOut
	if out.Len() > 0 {
		require.NoError(t, json.Unmarshal(out.Bytes(), &res), out.String())
	}
	return res, out.String(), err
}

// fleetLines adds n old running instances to the fake CP (a fleet that
// predates the worker) and returns them as JSON lines.
func fleetLines(env *jobtest.Env, n int) (string, []jobs.ImportRow) {
	var b strings.Builder
	rows := make([]jobs.ImportRow, n)
	for i := range rows {
		id := uuid.NewString()
		rows[i] = jobs.ImportRow{WorkspaceID: id, InstanceID: env.OldInstance(id), Runtime: "python", Tier: 1}
		fmt.Fprintf(&b, `{"workspace_id":%q,"instance_id":%q,"runtime":"python","tier":1}`+"\n", id, rows[i].InstanceID)
	}
	return b.String(), rows
}

func sweepOnce(t *testing.T, env *jobtest.Env, dryRun bool) sweep.Result {
	t.Helper()
	s := jobs.SweepSettings{Grace: time.Minute, PageSize: 5, ProvisioningDeadline: 30 * time.Minute}
	res, err := worker.RunSweep(context.Background(), env.Deps, env.Insert, s, jobs.OrphanSweepArgs{DryRun: dryRun})
	require.NoError(t, err)
	return res
}

// The cutover through the CLI: JSON lines on stdin register the fleet, a
// re-run changes nothing, and the sweep that held its breaker on the
// unknown fleet before the import finds no stray after it.
func TestEnqueueImport_StdinRegistersTheFleetForTheSweep(t *testing.T) {
	t.Parallel()
	env := jobtest.New(t, jobtest.Config{})
	lines, rows := fleetLines(env, 12)
	require.True(t, sweepOnce(t, env, true).BreakerOpen, "without the import the fleet must open the breaker")

	res, _, err := runImport(t, env, "\n"+lines+"\n")
	require.NoError(t, err)
	require.Equal(t, importOut{Created: 12, Stops: []string{}, Refusals: res.Refusals}, res)
	require.Empty(t, res.Refusals)
	counts := biCounts(t, env)

	again, _, err := runImport(t, env, lines)
	require.NoError(t, err)
	require.Equal(t, 12, again.Unchanged)
	require.Zero(t, again.Created+again.Refused)
	require.Equal(t, counts, biCounts(t, env), "a re-run wrote something")

	sw := sweepOnce(t, env, false)
	require.False(t, sw.BreakerOpen, "%+v", sw)
	require.Empty(t, sw.Orphans)
	require.Zero(t, sw.Enqueued)
	require.Len(t, env.CP.Live(""), 12)
	for _, r := range rows {
		ws := env.Workspace(r.WorkspaceID)
		require.Equal(t, store.StatusRunning, ws.Status)
		require.Equal(t, r.InstanceID, ws.InstanceID)
	}
}

func TestEnqueueImport_DryRunChangesNothing(t *testing.T) {
	t.Parallel()
	env := jobtest.New(t, jobtest.Config{NoStart: true})
	lines, _ := fleetLines(env, 3)
	before := biCounts(t, env)

	res, _, err := runImport(t, env, lines, "--dry-run")

	require.NoError(t, err)
	require.True(t, res.DryRun)
	require.Equal(t, 3, res.Created)
	require.Equal(t, before, biCounts(t, env), "a dry run wrote something")
}

// A refused row is listed with its line and reason; the others are
// imported; the command exits 1 (not 2: something was written).
func TestEnqueueImport_RefusedRowsAreListedAndTheRestImported(t *testing.T) {
	t.Parallel()
	env := jobtest.New(t, jobtest.Config{NoStart: true})
	lines, rows := fleetLines(env, 2)
	bad := uuid.NewString()
	input := lines + "\n" + fmt.Sprintf(`{"workspace_id":%q,"instance_id":"ami-0abc","runtime":"python","tier":1}`, bad) + "\n"

	res, _, err := runImport(t, env, input)

	require.Error(t, err)
	require.False(t, app.IsBadInput(err), "a refusal is not bad input: the others were imported")
	require.Contains(t, err.Error(), "1 of 3 rows refused")
	require.Equal(t, 2, res.Created)
	require.Equal(t, 1, res.Refused)
	require.Len(t, res.Refusals, 1)
	require.Equal(t, 4, res.Refusals[0].Line, "the stdin line, blank lines counted")
	require.Equal(t, bad, res.Refusals[0].WorkspaceID)
	require.Equal(t, "ami-0abc", res.Refusals[0].InstanceID)
	require.Contains(t, res.Refusals[0].Reason, "instance id must match")
	for _, r := range rows {
		require.Equal(t, r.InstanceID, env.Workspace(r.WorkspaceID).InstanceID)
	}
}

// A line that is not a row refuses the whole input before anything
// connects: exit 2, the line named, nothing written.
func TestEnqueueImport_MalformedLineExits2AndImportsNothing(t *testing.T) {
	t.Parallel()
	env := jobtest.New(t, jobtest.Config{NoStart: true})
	good, _ := fleetLines(env, 1)
	for _, tc := range []struct{ name, line, msg string }{
		{"not JSON", `workspace_id=x`, "want a JSON object"},
		{"truncated", `{"workspace_id":"`, "not a row"},
		{"unknown field", `{"workspace_id":"x","instance":"i-0123456789abcdef0"}`, `unknown field "instance"`},
		{"tier as a string", `{"workspace_id":"x","instance_id":"i-0123456789abcdef0","tier":"2"}`, "not a row"},
		{"two values", `{"workspace_id":"x"} {"workspace_id":"y"}`, "more than one JSON value"},
		{"an array", `[{"workspace_id":"x"}]`, "want a JSON object"},
		{"too long", `{"runtime":"` + strings.Repeat("a", 70<<10) + `"}`, "longer than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := biCounts(t, env)
			_, out, err := runImport(t, env, good+tc.line+"\n"+good)
			require.Error(t, err)
			require.True(t, app.IsBadInput(err), "%v", err)
			require.Contains(t, err.Error(), "stdin line 2: ")
			require.Contains(t, err.Error(), tc.msg)
			require.Contains(t, err.Error(), "nothing was imported")
			require.Empty(t, out)
			require.Equal(t, before, biCounts(t, env))
		})
	}
}

// --query reads the host's own table in the same database (public), in
// the import's transaction.
func TestEnqueueImport_QueryReadsTheHostsTable(t *testing.T) {
	t.Parallel()
	env := jobtest.New(t, jobtest.Config{NoStart: true})
	ctx := context.Background()
	// The host's table as docs/design.md#host-platform describes it, named with its
	// schema: the test database's search_path starts at the worker's.
	_, err := env.Pool.Exec(ctx, `
		CREATE TYPE public.workspace_status AS ENUM ('provisioning', 'online', 'offline', 'degraded', 'failed', 'removed', 'paused', 'hibernated');
		CREATE TABLE public.workspaces (id uuid PRIMARY KEY, name text NOT NULL, tier int, runtime text, parent_id uuid,
			status public.workspace_status, instance_id text, last_sample_error text, url text, updated_at timestamptz)`)
	require.NoError(t, err)
	_, rows := fleetLines(env, 3)
	for _, r := range rows {
		_, err := env.Pool.Exec(ctx, `INSERT INTO public.workspaces (id, name, status, instance_id, runtime, tier)
			VALUES ($1, 'w', 'online', $2, 'python', 1)`, r.WorkspaceID, r.InstanceID)
		require.NoError(t, err)
	}
	removed := uuid.NewString()
	_, err = env.Pool.Exec(ctx, `INSERT INTO public.workspaces (id, name, status, instance_id) VALUES ($1, 'gone', 'removed', $2)`,
		removed, env.OldInstance(removed))
	require.NoError(t, err)
	// NULL runtime and tier, and a malformed instance id the host holds.
	odd := uuid.NewString()
	_, err = env.Pool.Exec(ctx, `INSERT INTO public.workspaces (id, name, status, instance_id) VALUES ($1, 'odd', 'online', 'i-XYZ')`, odd)
	require.NoError(t, err)
	const q = `SELECT id, instance_id, runtime, tier FROM public.workspaces WHERE instance_id IS NOT NULL AND status <> 'removed' ORDER BY name, id`

	// A trailing semicolon, and a trailing comment, are part of how such
	// a query gets pasted.
	dry, _, err := runImport(t, env, "", "--query", q+";\n", "--dry-run")
	require.Error(t, err, "a refused row exits 1 in a dry run too")
	require.Equal(t, 3, dry.Created)

	res, _, err := runImport(t, env, "", "--query", q+" -- the host's live fleet")

	require.Error(t, err)
	require.False(t, app.IsBadInput(err))
	require.Equal(t, 3, res.Created)
	require.Equal(t, 1, res.Refused)
	require.Equal(t, odd, res.Refusals[0].WorkspaceID)
	require.Equal(t, 1, res.Refusals[0].Row, "'odd' sorts first")
	require.Zero(t, res.Refusals[0].Line)
	for _, r := range rows {
		ws := env.Workspace(r.WorkspaceID)
		require.Equal(t, r.InstanceID, ws.InstanceID)
		require.Equal(t, "python", ws.Runtime)
		require.Equal(t, 1, ws.Tier)
	}
	var n int
	require.NoError(t, env.Pool.QueryRow(ctx, `SELECT count(*) FROM provisioner.workspaces WHERE id = $1`, removed).Scan(&n))
	require.Zero(t, n, "a removed host row is not imported")
}

// A query Postgres refuses, or one of the wrong shape, is bad input and
// writes nothing; a statement other than a SELECT cannot run at all.
func TestEnqueueImport_BadQueryExits2AndWritesNothing(t *testing.T) {
	t.Parallel()
	env := jobtest.New(t, jobtest.Config{NoStart: true})
	env.SeedRows(jobtest.Row{Status: store.StatusStopped, Desired: store.DesiredStopped})
	for _, tc := range []struct{ name, query, msg string }{
		{"syntax error", `SELEC id`, "SQLSTATE 42601"},
		{"no such table", `SELECT id, instance_id, runtime, tier FROM public.nope`, "SQLSTATE 42P01"},
		{"three columns", `SELECT id, instance_id, runtime FROM provisioner.workspaces`, "want 4 or 5 columns"},
		{"six columns", `SELECT id, instance_id, runtime, tier, true, 1 FROM provisioner.workspaces`, "want 4 or 5 columns"},
		{"removed not a bool", `SELECT id, instance_id, runtime, tier, 'x' FROM provisioner.workspaces`, "SQLSTATE 22P02"},
		{"a delete", `DELETE FROM provisioner.workspaces RETURNING id, instance_id, runtime, tier`, "SQLSTATE 42601"},
		{"a second statement", `SELECT 1, 2, 3, 4; DELETE FROM provisioner.workspaces`, "SQLSTATE 42601"},
		{"tier not a number", `SELECT id, instance_id, runtime, 'x' FROM provisioner.workspaces`, "SQLSTATE 22P02"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := biCounts(t, env)
			_, out, err := runImport(t, env, "", "--query", tc.query)
			require.Error(t, err)
			require.True(t, app.IsBadInput(err), "%v", err)
			require.Contains(t, err.Error(), tc.msg)
			require.Empty(t, out)
			require.Equal(t, before, biCounts(t, env))
		})
	}
}

// The built binary: stdin from a pipe, exit 0 on success, 1 when a row
// was refused, 2 on a malformed line; nothing secret on stderr.
func TestEnqueueImportProcess_ExitCodes(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds cmd/enqueue")
	}
	env := jobtest.New(t, jobtest.Config{NoStart: true})
	bin := buildEnqueue(t)
	run := func(stdin string) (string, string, int) {
		cmd := exec.Command(bin, "import")
		cmd.Env = []string{"DATABASE_URL=" + env.DBURL, "PATH=" + os.Getenv("PATH")}
		for k, v := range consoleVars(env) {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		cmd.Stdin = strings.NewReader(stdin)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return stdout.String(), stderr.String(), exit.ExitCode()
		}
		require.NoError(t, err)
		return stdout.String(), stderr.String(), 0
	}
	lines, _ := fleetLines(env, 2)

	out, errOut, code := run(lines)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, `"created":2`)

	out, errOut, code = run(fmt.Sprintf(`{"workspace_id":%q,"instance_id":"i-1"}`, uuid.NewString()))
	require.Equal(t, 1, code)
	require.Contains(t, out, `"refused":1`)
	require.Equal(t, "enqueue: 1 of 1 rows refused (listed on stdout); the others were imported\n", errOut)

	out, errOut, code = run("{}\nnot json\n")
	require.Equal(t, 2, code)
	require.Empty(t, out)
	require.Contains(t, errOut, "stdin line 2: ")
	require.NotContains(t, errOut, env.DBURL)
}
