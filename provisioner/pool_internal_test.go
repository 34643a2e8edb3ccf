package provisioner

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/cp/cpfake"
	"github.com/molecule-ai/provision-worker/internal/testdb"
	"github.com/molecule-ai/provision-worker/internal/workerenv"
	"github.com/molecule-ai/provision-worker/jobs"
)

// The worker command and an embedding host open the pool here: without
// pool_max_conns in DATABASE_URL it is sized from the worker counts
// (workerenv.PoolConfig), not pgx's max(4, CPUs), which left 3
// connections to 80 workers in issue 15's soak.
func TestNew_PoolSizedFromWorkerCounts(t *testing.T) {
	t.Parallel()
	sim := cpfake.Start(cpfake.Options{OrgID: "org-pool"})
	t.Cleanup(sim.Close)
	opts := jobs.Options{ProvisionWorkers: 120, TerminateWorkers: 80}
	w, err := New(context.Background(), Config{
		DatabaseURL: testdb.New(t),
		CP:          CPConfig{BaseURL: sim.URL, OrgID: "org-pool", Timeout: 30 * time.Second},
		Options:     opts,
		Logger:      zerolog.Nop(),
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, w.Stop(context.Background())) })
	want := max(workerenv.DefaultMaxConns(opts), int32(max(4, runtime.NumCPU())))
	require.Equal(t, int32(54), workerenv.DefaultMaxConns(opts))
	require.Equal(t, want, w.pool.Config().MaxConns)
}
