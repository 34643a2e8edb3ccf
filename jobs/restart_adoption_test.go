package jobs_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/cp"
	"github.com/molecule-ai/provision-worker/internal/cp/cpfake"
	"github.com/molecule-ai/provision-worker/internal/jobtest"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/jobs"
)

// eventualCP models what the CP contract (docs/design.md#cp-contract)
// allows of EC2: after a 2xx terminate,
// the list keeps showing the instance as running (here: until the test
// ends). It can also lose the answer of the next provision after the CP
// launched (as a connection reset after the CP acted would).
type eventualCP struct {
	cp.API
	fake *cpfake.Server

	mu       sync.Mutex
	ghosts   []cp.Instance // stopped, still listed as running
	loseNext bool
}

func (c *eventualCP) Start(ctx context.Context, req cp.ProvisionRequest) (cp.Instance, error) {
	inst, err := c.API.Start(ctx, req)
	c.mu.Lock()
	lose := c.loseNext && err == nil
	c.loseNext = false
	c.mu.Unlock()
	if lose {
		return cp.Instance{}, &cp.Error{Op: "provision", Class: cp.ClassAmbiguous, Err: errors.New("connection reset after the CP launched")}
	}
	return inst, err
}

func (c *eventualCP) Stop(ctx context.Context, workspaceID, instanceID string) error {
	err := c.API.Stop(ctx, workspaceID, instanceID)
	if err == nil {
		for _, in := range c.fake.Instances() {
			if in.InstanceID == instanceID {
				in.State = cpfake.StateRunning
				c.mu.Lock()
				c.ghosts = append(c.ghosts, in)
				c.mu.Unlock()
			}
		}
	}
	return err
}

func (c *eventualCP) List(ctx context.Context, o cp.ListOptions) (cp.Page, error) {
	p, err := c.API.List(ctx, o)
	if err != nil || o.Cursor != "" {
		return p, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, g := range c.ghosts {
		if (o.WorkspaceID == "" || g.WorkspaceID == o.WorkspaceID) &&
			!slices.ContainsFunc(p.Instances, func(in cp.Instance) bool { return in.InstanceID == g.InstanceID }) {
			p.Instances = append(p.Instances, g)
		}
	}
	// In launch order, as the CP lists: the stopped instance comes first.
	slices.SortFunc(p.Instances, func(a, b cp.Instance) int { return a.LaunchedAt.Compare(b.LaunchedAt) })
	return p, nil
}

// A restart's DELETE of A gets a 2xx while the list still shows A running;
// generation 2's first attempt then launches B and loses the answer, or
// fails with a 5xx. The retry must adopt B (or launch one), never A: A is
// being terminated, and the sweep would then kill B as a duplicate.
func TestRestart_RetryNeverAdoptsTheInstanceTheRestartStopped(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		setup func(e *jobtest.Env, c *eventualCP)
	}{
		{"answer of B lost", func(_ *jobtest.Env, c *eventualCP) { c.loseNext = true }},
		{"first attempt 5xx", func(e *jobtest.Env, _ *eventualCP) { e.CP.FailNext(cpfake.RouteProvision, 503, 1) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var ecp *eventualCP
			e := jobtest.New(t, jobtest.Config{NoStart: true, CP: func(e *jobtest.Env) cp.API {
				ecp = &eventualCP{API: e.API, fake: e.CP}
				return ecp
			}})
			e.Start()
			id := uuid.NewString()
			a := e.ProvisionRunning(jobs.ProvisionRequest{WorkspaceID: id}).InstanceID

			tc.setup(e, ecp)
			require.NoError(t, e.Tx(func(tx pgx.Tx) error {
				_, err := jobs.RequestRestart(context.Background(), tx, e.Insert, id, "test")
				return err
			}))
			e.WaitFor("generation 2 running", func() bool {
				ws := e.Workspace(id)
				return ws.Generation == 2 && ws.Status == store.StatusRunning
			})

			ws := e.Workspace(id)
			require.NotEqual(t, a, ws.InstanceID, "generation 2 adopted the instance its restart stopped")
			live := e.CP.Live(id)
			require.Len(t, live, 1)
			require.Equal(t, live[0].InstanceID, ws.InstanceID, "the row must record the instance that runs")
			require.Contains(t, e.Logs.String(), `"evt":"provision.adopt_refused"`)
		})
	}
}

// A stop with no recorded id terminates what the list shows; those ids
// must be on its timeline line, the record the next generation reads
// before adopting.
func TestTerminate_RecordsTheListedInstancesItStopped(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{})
	id := uuid.NewString()
	a, b := e.OldInstance(id), e.OldInstance(id)
	e.SeedRows(jobtest.Row{ID: id, Status: store.StatusStopping, Desired: store.DesiredStopped})
	_, err := e.Insert.Insert(context.Background(), jobs.TerminateArgs{WorkspaceID: id}, nil)
	require.NoError(t, err)

	e.WaitStatus(id, store.StatusStopped)

	stopped, err := store.MustFor("").StoppedInstances(context.Background(), e.Pool, id, []string{"provision.ec2_stopped"})
	require.NoError(t, err)
	require.Equal(t, map[string]bool{a: true, b: true}, stopped)
}
