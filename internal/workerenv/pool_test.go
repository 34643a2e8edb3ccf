package workerenv_test

import (
	"runtime"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/config"
	"github.com/molecule-ai/provision-worker/internal/workerenv"
	"github.com/molecule-ai/provision-worker/jobs"
)

// pgx's default pool, max(4, CPUs), left 3 connections (River holds one
// for LISTEN) to 80 workers in issue 15's soak, and the queue grew while
// the workers waited on the pool. Without pool_max_conns the worker sizes
// its pool from its worker counts; with it, the operator's size stands.
func TestPoolConfig_SizedFromWorkerCountsUnlessTheURLSetsIt(t *testing.T) {
	t.Parallel()
	const base = "postgres://u@127.0.0.1:5432/db?sslmode=disable"
	many := jobs.Options{ProvisionWorkers: 200, TerminateWorkers: 100}
	require.Equal(t, int32(14), workerenv.DefaultMaxConns(jobs.Options{}), "20 + 20 workers by default")
	require.Equal(t, int32(79), workerenv.DefaultMaxConns(many), "300 workers / 4 + 4")
	require.Equal(t, int32(5), workerenv.DefaultMaxConns(jobs.Options{ProvisionWorkers: 1, TerminateWorkers: 1}), "2 workers round up to 1 + 4")

	pgxDefault := int32(max(4, runtime.NumCPU()))
	cases := []struct {
		name string
		url  string
		o    jobs.Options
		want int32
	}{
		{"url without a size", base, many, max(79, pgxDefault)},
		{"url with a size", base + "&pool_max_conns=7", many, 7},
		{"keyword form without a size", "host=127.0.0.1 user=u dbname=db", many, max(79, pgxDefault)},
		{"keyword form with a size", "host=127.0.0.1 pool_max_conns=7 user=u", many, 7},
		{"few workers keep pgx's default", base, jobs.Options{ProvisionWorkers: 1, TerminateWorkers: 1}, max(5, pgxDefault)},
		{"a password that merely names the key", "postgres://u:pool_max_conns@127.0.0.1/db", many, max(79, pgxDefault)},
	}
	for _, c := range cases {
		cfg, err := workerenv.PoolConfig(c.url, c.o)
		require.NoError(t, err, c.name)
		require.Equal(t, c.want, cfg.MaxConns, c.name)
		// Everything else is pgx's parse of the same string.
		plain, err := pgxpool.ParseConfig(c.url)
		require.NoError(t, err, c.name)
		require.Equal(t, plain.ConnConfig.Host, cfg.ConnConfig.Host, c.name)
		require.Equal(t, plain.MinConns, cfg.MinConns, c.name)
	}
}

func TestPoolConfig_BadURLIsAUsageErrorWithoutItsText(t *testing.T) {
	t.Parallel()
	_, err := workerenv.PoolConfig("postgres://u:s3cret@[::1/db", jobs.Options{})
	require.ErrorIs(t, err, config.ErrUsage)
	require.NotContains(t, err.Error(), "s3cret")
}
