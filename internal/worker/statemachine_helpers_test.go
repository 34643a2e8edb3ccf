package worker_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/cp"
	"github.com/molecule-ai/provision-worker/internal/jobtest"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/jobs"
)

// seedRow is a workspace row written straight into Postgres, so a test can
// start from any cell of docs/design.md's request table.
type seedRow struct {
	id         string
	status     string
	desired    string
	instanceID string // "" for NULL
	generation int64
	nonce      string
}

func (s seedRow) insert(t *testing.T, e *jobtest.Env) {
	t.Helper()
	if s.generation == 0 {
		s.generation = 1
	}
	if s.nonce == "" {
		s.nonce = "seed-nonce"
	}
	var inst any
	if s.instanceID != "" {
		inst = s.instanceID
	}
	_, err := e.Pool.Exec(context.Background(), `
		INSERT INTO workspaces (id, status, desired_state, instance_id, generation, provision_nonce)
		VALUES ($1, $2, $3, $4, $5, $6)`, s.id, s.status, s.desired, inst, s.generation, s.nonce)
	require.NoError(t, err)
}

// randomInstanceID is a well-formed EC2 id no fake instance has.
func randomInstanceID() string {
	return fmt.Sprintf("i-%017x", rand.Uint64()>>4)
}

// setJobState moves a River job behind the worker's back, as the rescuer
// or an operator's cancel would.
func setJobState(t *testing.T, e *jobtest.Env, jobID int64, state rivertype.JobState, scheduledIn time.Duration) {
	t.Helper()
	_, err := e.Pool.Exec(context.Background(), `
		UPDATE river_job SET state = $2::text::river_job_state, scheduled_at = now() + $3::interval,
			finalized_at = CASE WHEN $2::text IN ('cancelled', 'discarded', 'completed') THEN now() END
		WHERE id = $1`, jobID, string(state), fmt.Sprintf("%d milliseconds", scheduledIn.Milliseconds()))
	require.NoError(t, err)
}

// workspaceJobs lists every job of a workspace, any state.
func workspaceJobs(t *testing.T, e *jobtest.Env, id string) []store.JobRef {
	t.Helper()
	refs, err := store.MustFor("").JobsForWorkspace(context.Background(), e.Pool, id)
	require.NoError(t, err)
	return refs
}

func jobsOfKind(refs []store.JobRef, kind string) []store.JobRef {
	var out []store.JobRef
	for _, r := range refs {
		if r.Kind == kind {
			out = append(out, r)
		}
	}
	return out
}

// instanceTerminates lists the instance_terminate jobs naming an instance.
func instanceTerminates(t *testing.T, e *jobtest.Env, instanceID string) []store.JobRef {
	t.Helper()
	var out []store.JobRef
	rows, err := e.Pool.Query(context.Background(), `
		SELECT id, kind, state::text, attempt FROM river_job
		WHERE kind = $1 AND args->>'instance_id' = $2 ORDER BY id`, jobs.KindInstanceTerminate, instanceID)
	require.NoError(t, err)
	defer rows.Close()
	for rows.Next() {
		var r store.JobRef
		require.NoError(t, rows.Scan(&r.ID, &r.Kind, &r.State, &r.Attempt))
		out = append(out, r)
	}
	require.NoError(t, rows.Err())
	return out
}

// provisionGate blocks provision requests inside the fake CP, after the
// instance exists and before the answer leaves: the window in which a
// stop, a new generation, a rescue or a cancel can overtake the worker.
type provisionGate struct {
	started chan cp.Instance
	release chan struct{}
	once    sync.Once
	mu      sync.Mutex
	seen    int // provisions that reached the hook
}

// gateProvisions blocks the first n provisions (n <= 0: all of them) until
// open is called; test cleanup opens the gate before the worker stops.
func gateProvisions(t *testing.T, e *jobtest.Env, n int) *provisionGate {
	g := &provisionGate{started: make(chan cp.Instance, 64), release: make(chan struct{})}
	e.CP.SetProvisionHook(func(_ string, inst cp.Instance) {
		g.mu.Lock()
		block := n <= 0 || g.seen < n
		g.seen++
		g.mu.Unlock()
		select {
		case g.started <- inst:
		default:
		}
		if block {
			<-g.release
		}
	})
	t.Cleanup(g.open)
	return g
}

func (g *provisionGate) open() { g.once.Do(func() { close(g.release) }) }

// next waits for a provision to reach the CP.
func (g *provisionGate) next(t *testing.T) cp.Instance {
	t.Helper()
	select {
	case inst := <-g.started:
		return inst
	case <-time.After(30 * time.Second):
		t.Fatal("no provision reached the CP")
		return cp.Instance{}
	}
}

// jobState reads one job's state.
func jobState(t *testing.T, e *jobtest.Env, id int64) *rivertype.JobRow {
	t.Helper()
	job, err := e.Insert.JobGet(context.Background(), id)
	require.NoError(t, err)
	return job
}

func logHas(e *jobtest.Env, s string) bool { return strings.Contains(e.Logs.String(), s) }
