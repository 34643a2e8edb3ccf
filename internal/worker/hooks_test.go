package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/cp"
	"github.com/molecule-ai/provision-worker/internal/cp/cpfake"
	"github.com/molecule-ai/provision-worker/internal/jobtest"
	"github.com/molecule-ai/provision-worker/internal/obs"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/internal/worker"
	"github.com/molecule-ai/provision-worker/jobs"
)

// hookSecret is what a failing env hook puts in its error: it must never
// show up anywhere the worker writes.
const hookSecret = "decrypt DB_PASSWORD=hunter2-SECRET-b7e1 with key kms-9f3c"

// sentEnv decodes the env of every provision request the fake CP got.
func sentEnv(t *testing.T, e *jobtest.Env, id string) []map[string]string {
	t.Helper()
	var out []map[string]string
	for _, r := range requestsOf(e.CP, cpfake.RouteProvision) {
		var body struct {
			WorkspaceID string            `json:"workspace_id"`
			Env         map[string]string `json:"env"`
		}
		require.NoError(t, json.Unmarshal(r.Body, &body))
		if body.WorkspaceID == id {
			out = append(out, body.Env)
		}
	}
	return out
}

// storedEnv is the worker's workspace_env value for id ("" when no row).
func storedEnv(t *testing.T, e *jobtest.Env, id string) string {
	t.Helper()
	var s string
	err := e.Pool.QueryRow(context.Background(), `SELECT env::text FROM workspace_env WHERE workspace_id = $1`, id).Scan(&s)
	if errors.Is(err, pgx.ErrNoRows) {
		return ""
	}
	require.NoError(t, err)
	return s
}

// everywhere is every place the worker writes text a person can read.
func everywhere(t *testing.T, e *jobtest.Env) map[string]string {
	t.Helper()
	dump := func(sql string) string {
		var s string
		require.NoError(t, e.Pool.QueryRow(context.Background(), sql).Scan(&s))
		return s
	}
	return map[string]string{
		"log":        e.Logs.String(),
		"river_job":  dump(`SELECT coalesce(string_agg(j::text, E'\n'), '') FROM river_job j`),
		"timeline":   dump(`SELECT coalesce(string_agg(x::text, E'\n'), '') FROM workspace_events x`),
		"workspaces": dump(`SELECT coalesce(string_agg(x::text, E'\n'), '') FROM workspaces x`),
		"env table":  dump(`SELECT coalesce(string_agg(x::text, E'\n'), '') FROM workspace_env x`),
	}
}

// With the hook set, the CP gets the hook's env, asked for at call time;
// env a request still passed is neither read nor sent (a warning without
// values says so), and nothing the hook returned is stored.
func TestEnvHook_SuppliesTheEnvAndNothingOfItIsStored(t *testing.T) {
	t.Parallel()
	hostEnv := func(id string) map[string]string {
		return map[string]string{"API_KEY": "sk-host-" + id[:8], "REGION": "eu-west-1"}
	}
	var calls atomic.Int32
	e := jobtest.New(t, jobtest.Config{Env: func(_ context.Context, id string) (map[string]string, error) {
		calls.Add(1)
		return hostEnv(id), nil
	}})
	cases := []struct {
		name       string
		requestEnv map[string]string
		wantStored string
	}{
		{name: "no env in the request", wantStored: "{}"},
		{name: "stale env in the request is ignored", requestEnv: map[string]string{"OLD": "stale-VALUE-4411"},
			wantStored: `{"OLD": "stale-VALUE-4411"}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := uuid.NewString()
			before := calls.Load()
			e.ProvisionRunning(jobs.ProvisionRequest{WorkspaceID: id, Env: c.requestEnv})

			require.Equal(t, []map[string]string{hostEnv(id)}, sentEnv(t, e, id))
			require.Equal(t, int32(1), calls.Load()-before)
			require.Equal(t, c.wantStored, storedEnv(t, e, id), "the worker stored nothing of the hook's env")
			ignored := c.requestEnv != nil
			require.Equal(t, ignored, contains(eventNames(t, e, id), obs.EvStoredEnvIgnored))
			for where, text := range everywhere(t, e) {
				if where != "env table" {
					require.NotContains(t, text, "stale-VALUE-4411", where)
				}
				require.NotContains(t, text, hostEnv(id)["API_KEY"], where)
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// A failing env hook is retried, never marks the workspace failed (not
// on the last attempt either: that one snoozes, bounded, then the job is
// discarded with the row still provisioning), and its text appears
// nowhere: job errors, timeline, log, rows. Pins hostEnv and envFailed.
func TestEnvHook_FailuresRetryNeverFailTheWorkspaceAndLeaveNoText(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name        string
		failures    int // calls that fail before one succeeds (-1: all)
		panics      bool
		maxAttempts int
		wantStatus  string
		wantJob     rivertype.JobState
	}{
		{name: "fails twice then works", failures: 2, maxAttempts: 5,
			wantStatus: store.StatusRunning, wantJob: rivertype.JobStateCompleted},
		{name: "panics once then works", failures: 1, panics: true, maxAttempts: 5,
			wantStatus: store.StatusRunning, wantJob: rivertype.JobStateCompleted},
		{name: "fails past the last attempt", failures: -1, maxAttempts: 2,
			wantStatus: store.StatusProvisioning, wantJob: rivertype.JobStateDiscarded},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var calls atomic.Int32
			hook := func(_ context.Context, _ string) (map[string]string, error) {
				n := int(calls.Add(1))
				if c.failures >= 0 && n > c.failures {
					return map[string]string{"K": "v"}, nil
				}
				if c.panics {
					panic(hookSecret)
				}
				return nil, errors.New(hookSecret)
			}
			e := jobtest.New(t, jobtest.Config{Env: hook,
				Settings: jobs.Settings{ProvisionMaxAttempts: c.maxAttempts, MaxSnoozes: 2}})
			id := uuid.NewString()
			res := e.Provision(jobs.ProvisionRequest{WorkspaceID: id})

			var job *rivertype.JobRow
			e.WaitFor("the provision to finish", func() bool {
				job = jobState(t, e, res.Job.ID)
				return job.FinalizedAt != nil
			})
			require.Equal(t, c.wantJob, job.State)
			require.Equal(t, c.wantStatus, e.Workspace(id).Status, "a hook error never fails the workspace")
			require.NotContains(t, eventNames(t, e, id), obs.EvProvisionFailed)

			failed := int(calls.Load())
			if c.failures >= 0 {
				failed = c.failures
				require.Len(t, sentEnv(t, e, id), 1)
			} else {
				require.Empty(t, sentEnv(t, e, id), "no CP call without the env")
				// Every attempt, then MaxSnoozes more tries of the last one.
				require.Equal(t, c.maxAttempts+2, failed)
			}
			require.Len(t, job.Errors, min(failed, c.maxAttempts))
			for _, je := range job.Errors {
				require.Contains(t, je.Error, jobs.ErrEnvHook.Error())
			}
			require.Equal(t, float64(failed), testutil.ToFloat64(e.Metrics.HookFailures.WithLabelValues(obs.HookEnv)))
			for where, text := range everywhere(t, e) {
				require.NotContains(t, text, "hunter2", where)
				require.NotContains(t, text, "kms-9f3c", where)
			}
		})
	}
}

// hostWorld is a host table written by the outcome hook, the way a host's
// own workspaces row would be.
type hostWorld struct {
	*jobtest.Env
	mu    sync.Mutex
	fail  map[jobs.Status]int // outcomes to fail, and how many times
	calls []jobs.Outcome
}

func newHostWorld(t *testing.T, cfg jobtest.Config) *hostWorld {
	t.Helper()
	h := &hostWorld{fail: map[jobs.Status]int{}}
	cfg.OnOutcome = h.onOutcome
	h.Env = jobtest.New(t, cfg)
	_, err := h.Pool.Exec(context.Background(), `CREATE TABLE public.host_ws (
		id uuid PRIMARY KEY, status text NOT NULL, instance_id text, last_error text)`)
	require.NoError(t, err)
	return h
}

// onOutcome is the host's hook: one UPDATE of its own row, through the
// same Execer a *sql.Tx would be.
func (h *hostWorld) onOutcome(ctx context.Context, tx jobs.Execer, o jobs.Outcome) error {
	h.mu.Lock()
	h.calls = append(h.calls, o)
	fail := h.fail[o.Status] > 0
	if fail {
		h.fail[o.Status]--
	}
	h.mu.Unlock()
	var inst, msg any
	if o.InstanceID != "" {
		inst = o.InstanceID
	}
	if o.Message != "" {
		msg = o.Message
	}
	res, err := tx.ExecContext(ctx, `UPDATE public.host_ws SET status = $2, instance_id = $3, last_error = $4 WHERE id = $1`,
		o.WorkspaceID, string(o.Status), inst, msg)
	if err != nil {
		return fmt.Errorf("update host row: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return fmt.Errorf("update host row: %d rows (%v)", n, err)
	}
	if fail {
		return errors.New("host says no: lock-timeout-5521")
	}
	return nil
}

type hostRow struct {
	Status     string
	InstanceID *string
	LastError  *string
}

func (h *hostWorld) create(t *testing.T, id string) {
	t.Helper()
	_, err := h.Pool.Exec(context.Background(), `INSERT INTO public.host_ws (id, status) VALUES ($1, 'provisioning')`, id)
	require.NoError(t, err)
}

func (h *hostWorld) row(t *testing.T, id string) hostRow {
	t.Helper()
	var r hostRow
	require.NoError(t, h.Pool.QueryRow(context.Background(),
		`SELECT status, instance_id, last_error FROM public.host_ws WHERE id = $1`, id).Scan(&r.Status, &r.InstanceID, &r.LastError))
	return r
}

// requireAgree checks the host row says what the worker's row says.
func (h *hostWorld) requireAgree(t *testing.T, id string) (store.Workspace, hostRow) {
	t.Helper()
	ws, host := h.Workspace(id), h.row(t, id)
	require.Equal(t, ws.Status, host.Status)
	if ws.InstanceID == "" {
		require.Nil(t, host.InstanceID)
	} else {
		require.NotNil(t, host.InstanceID)
		require.Equal(t, ws.InstanceID, *host.InstanceID)
	}
	return ws, host
}

func (h *hostWorld) requestDelete(t *testing.T, id string) {
	t.Helper()
	require.NoError(t, h.Tx(func(tx pgx.Tx) error {
		_, err := jobs.RequestTerminate(context.Background(), tx, h.Insert, jobs.TerminateRequest{WorkspaceID: id, Delete: true})
		return err
	}))
}

// The host's row follows every outcome in the worker's transaction:
// running with the instance id, failed with the generic message only,
// stopped or removed with the id cleared, and provisioning with the id
// cleared while a restart boots its next instance.
func TestOutcomeHook_HostRowFollowsEveryOutcome(t *testing.T) {
	t.Parallel()
	h := newHostWorld(t, jobtest.Config{})
	restartID := ""
	cases := []struct {
		name       string
		act        func(t *testing.T, id string)
		wantStatus string
	}{
		{name: "provisioned", wantStatus: store.StatusRunning, act: func(t *testing.T, id string) {
			h.Provision(jobs.ProvisionRequest{WorkspaceID: id})
		}},
		{name: "rejected by the CP", wantStatus: store.StatusFailed, act: func(t *testing.T, id string) {
			h.CP.FailNext(cpfake.RouteProvision, 422, 1)
			h.Provision(jobs.ProvisionRequest{WorkspaceID: id})
		}},
		{name: "stopped", wantStatus: store.StatusStopped, act: func(t *testing.T, id string) {
			h.ProvisionRunning(jobs.ProvisionRequest{WorkspaceID: id})
			h.Terminate(id)
		}},
		{name: "deleted", wantStatus: store.StatusRemoved, act: func(t *testing.T, id string) {
			h.ProvisionRunning(jobs.ProvisionRequest{WorkspaceID: id})
			h.requestDelete(t, id)
		}},
		{name: "restarted", wantStatus: store.StatusRunning, act: func(t *testing.T, id string) {
			restartID = id
			first := h.ProvisionRunning(jobs.ProvisionRequest{WorkspaceID: id}).InstanceID
			require.NoError(t, h.Tx(func(tx pgx.Tx) error {
				_, err := jobs.RequestRestart(context.Background(), tx, h.Insert, id, "test")
				return err
			}))
			h.WaitFor("the restart's new instance", func() bool {
				ws := h.Workspace(id)
				return ws.Status == store.StatusRunning && ws.InstanceID != first
			})
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := uuid.NewString()
			h.create(t, id)
			c.act(t, id)
			h.WaitStatus(id, c.wantStatus)
			ws, host := h.requireAgree(t, id)
			switch c.wantStatus {
			case store.StatusRunning:
				require.NotEmpty(t, ws.InstanceID)
				require.Nil(t, host.LastError)
			case store.StatusFailed:
				require.NotNil(t, host.LastError)
				require.Equal(t, jobs.GenericFailure, *host.LastError, "never the CP's text")
				require.Contains(t, ws.LastError, "injected", "the worker's own row keeps the CP's text")
			}
			require.Equal(t, jobs.Status(c.wantStatus), h.lastOutcome(id).Status)
		})
	}
	// The restart told the host its old instance was gone before the new
	// one ran.
	var restarted []jobs.Status
	for _, o := range h.outcomesOf(restartID) {
		restarted = append(restarted, o.Status)
	}
	require.Equal(t, []jobs.Status{jobs.StatusRunning, jobs.StatusProvisioning, jobs.StatusRunning}, restarted)
}

func (h *hostWorld) outcomesOf(id string) []jobs.Outcome {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []jobs.Outcome
	for _, o := range h.calls {
		if o.WorkspaceID == id {
			out = append(out, o)
		}
	}
	return out
}

func (h *hostWorld) lastOutcome(id string) jobs.Outcome {
	all := h.outcomesOf(id)
	if len(all) == 0 {
		return jobs.Outcome{}
	}
	return all[len(all)-1]
}

// An outcome hook that fails once rolls back the worker's row change and
// the job's completion with it: the job retries (a failed mark is not
// read as a CP failure, so the row is never failed for it and the job is
// not cancelled), the host's text stays off the timeline, and both rows
// end agreeing. Pins Deps.outcome's error path in each transaction.
func TestOutcomeHook_ErrorRollsBackTheChangeAndTheJobRetries(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		failOn     jobs.Status
		act        func(h *hostWorld, t *testing.T, id string) *rivertype.JobRow
		wantStatus string
	}{
		{name: "recording the instance", failOn: jobs.StatusRunning, wantStatus: store.StatusRunning,
			act: func(h *hostWorld, t *testing.T, id string) *rivertype.JobRow {
				return h.Provision(jobs.ProvisionRequest{WorkspaceID: id}).Job
			}},
		{name: "marking a CP rejection failed", failOn: jobs.StatusFailed, wantStatus: store.StatusRunning,
			act: func(h *hostWorld, t *testing.T, id string) *rivertype.JobRow {
				h.CP.FailNext(cpfake.RouteProvision, 422, 1) // the retry is accepted
				return h.Provision(jobs.ProvisionRequest{WorkspaceID: id}).Job
			}},
		{name: "finishing a stop", failOn: jobs.StatusStopped, wantStatus: store.StatusStopped,
			act: func(h *hostWorld, t *testing.T, id string) *rivertype.JobRow {
				h.ProvisionRunning(jobs.ProvisionRequest{WorkspaceID: id})
				return h.Terminate(id).Job
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			h := newHostWorld(t, jobtest.Config{})
			h.fail[c.failOn] = 1
			id := uuid.NewString()
			h.create(t, id)
			job := c.act(h, t, id)
			h.WaitFor("the job to complete", func() bool {
				job = jobState(t, h.Env, job.ID)
				return job.State == rivertype.JobStateCompleted
			})
			h.WaitStatus(id, c.wantStatus)
			h.requireAgree(t, id)

			require.Equal(t, 2, job.Attempt, "the hook's failure spent one attempt")
			require.Len(t, job.Errors, 1)
			require.ErrorContains(t, errors.New(job.Errors[0].Error), jobs.ErrOutcomeHook.Error())
			require.Contains(t, job.Errors[0].Error, "lock-timeout-5521", "the host's text is its own: kept in the job error")
			require.Equal(t, 1.0, testutil.ToFloat64(h.Metrics.HookFailures.WithLabelValues(obs.HookOutcome)))
			require.True(t, logHas(h.Env, obs.EvOutcomeHookFail))

			// Attempt 1 changed nothing: the one row change on the timeline
			// is attempt 2's, and the row was never failed.
			evs, err := store.MustFor("").Events(context.Background(), h.Pool, id)
			require.NoError(t, err)
			changes := 0
			for _, ev := range evs {
				require.NotContains(t, fmt.Sprint(ev.Fields), "lock-timeout-5521")
				require.NotEqual(t, obs.EvProvisionFailed, ev.Event)
				if ev.JobID == job.ID && rowChange[ev.Event] {
					changes++
					require.Equal(t, 2, ev.Attempt, ev.Event)
				}
			}
			require.Equal(t, 1, changes)
			require.Len(t, h.CP.Live(id), map[string]int{store.StatusRunning: 1, store.StatusStopped: 0}[c.wantStatus])
		})
	}
}

// rowChange are the timeline events of a row's status change.
var rowChange = map[string]bool{obs.EvProvisionStarted: true, obs.EvProvisionAdopted: true,
	obs.EvProvisionFailed: true, obs.EvProvisionStopped: true}

// The sweep's stuck-provisioning mark tells the host in its transaction,
// and a failing hook leaves both rows unmarked for the next sweep.
func TestOutcomeHook_SweepMarkingStuckProvisioningFailedTellsTheHost(t *testing.T) {
	t.Parallel()
	h := newHostWorld(t, jobtest.Config{NoStart: true})
	rows := h.SeedRows(jobtest.Row{Status: store.StatusProvisioning, ChangedAgo: 2 * time.Hour})
	id := rows[0].ID
	h.create(t, id)
	h.fail[jobs.StatusFailed] = 1

	res, err := worker.RunSweep(context.Background(), h.Deps, h.Insert, testSweep(), jobs.OrphanSweepArgs{})
	require.NoError(t, err, "one row's failure is counted, not fatal")
	require.Equal(t, 1, res.Errors)
	require.True(t, logHas(h.Env, obs.EvOutcomeHookFail))
	require.Equal(t, store.StatusProvisioning, h.Workspace(id).Status)
	require.Equal(t, store.StatusProvisioning, h.row(t, id).Status)

	res = sweepNow(t, h.Env, testSweep(), jobs.OrphanSweepArgs{})
	require.Equal(t, 1, res.MarkedFailed)
	_, host := h.requireAgree(t, id)
	require.Equal(t, store.StatusFailed, host.Status)
	require.Equal(t, jobs.GenericFailure, *host.LastError)
}

// A replayed Idempotency-Key that hands back an instance this workspace
// already stopped marks the row failed (refuseStopped): the host hears
// failed with the generic message, not the worker's reason, which names
// the instance. Pins the outcome call in refuseStopped.
func TestOutcomeHook_ReplayedStoppedInstanceTellsTheHostFailed(t *testing.T) {
	t.Parallel()
	h := newHostWorld(t, jobtest.Config{NoStart: true, Settings: jobs.Settings{ProvisionMaxAttempts: 1},
		CP: func(e *jobtest.Env) cp.API { return &replayCP{API: e.API, seen: map[string]cp.Instance{}} }})
	h.Start()
	ctx := context.Background()
	_, err := h.Pool.Exec(ctx, `
		CREATE FUNCTION fail_record() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN RAISE EXCEPTION 'injected: record failed'; END $$;
		CREATE TRIGGER fail_record BEFORE INSERT ON workspace_events
			FOR EACH ROW WHEN (NEW.event = 'provision.ec2_started') EXECUTE FUNCTION fail_record();`)
	require.NoError(t, err)
	id := uuid.NewString()
	h.create(t, id)
	job := h.Provision(jobs.ProvisionRequest{WorkspaceID: id}).Job
	require.Equal(t, rivertype.JobStateDiscarded, finalJob(t, h.Env, job.ID).State)
	b := h.CP.Instances()[0].InstanceID
	requireTerminatedByInstanceTerminate(t, h.Env, b)
	require.Equal(t, store.StatusProvisioning, h.row(t, id).Status, "nothing was recorded, so the host heard nothing")
	_, err = h.Pool.Exec(ctx, `DROP TRIGGER fail_record ON workspace_events`)
	require.NoError(t, err)

	_, err = h.Insert.JobRetry(ctx, job.ID)
	require.NoError(t, err)

	ws := h.WaitStatus(id, store.StatusFailed)
	require.Contains(t, ws.LastError, b)
	_, host := h.requireAgree(t, id)
	require.Equal(t, jobs.GenericFailure, *host.LastError)
}

// A provision discarded because the env hook kept failing is not marked
// failed by the sweep's provisioning deadline either: the sweep re-runs
// the same job (one more attempt per sweep), and once the hook works the
// workspace runs. Pins ClassEnvHookDiscarded.
func TestEnvHook_SweepReRunsADiscardedProvisionInsteadOfFailingIt(t *testing.T) {
	t.Parallel()
	var works atomic.Bool
	e := jobtest.New(t, jobtest.Config{
		Settings: jobs.Settings{ProvisionMaxAttempts: 1, MaxSnoozes: 1},
		Env: func(context.Context, string) (map[string]string, error) {
			if works.Load() {
				return map[string]string{"K": "v"}, nil
			}
			return nil, errors.New(hookSecret)
		}})
	id := uuid.NewString()
	job := e.Provision(jobs.ProvisionRequest{WorkspaceID: id}).Job
	require.Equal(t, rivertype.JobStateDiscarded, finalJob(t, e, job.ID).State)
	_, err := e.Pool.Exec(context.Background(),
		`UPDATE workspaces SET status_changed_at = now() - interval '2 hours' WHERE id = $1`, id)
	require.NoError(t, err)

	works.Store(true) // a discarded job does not run again until re-run
	res := sweepNow(t, e, testSweep(), jobs.OrphanSweepArgs{})
	require.Equal(t, map[string]int{"provision_env_hook_discarded": 1}, res.Orphans)
	require.Equal(t, 1, res.Retried)
	require.Zero(t, res.MarkedFailed)
	require.NotEqual(t, store.StatusFailed, e.Workspace(id).Status)

	e.WaitStatus(id, store.StatusRunning)
	require.Equal(t, rivertype.JobStateCompleted, finalJob(t, e, job.ID).State, "the same job, not a twin")
	require.NotContains(t, eventNames(t, e, id), obs.EvProvisionFailed)
}
