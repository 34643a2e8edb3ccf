package bench

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/molecule-ai/provision-worker/internal/cp/cpfake"
	"github.com/molecule-ai/provision-worker/jobs"
)

// SlowCP is figure 5: N provisions against a CP that takes SlowLatency per
// call. With MaxWorkers provisions in flight the ideal makespan is
// N × latency / MaxWorkers; the ratio is what the queue and the database
// add on top of the CP's own time.
func SlowCP(ctx context.Context, env *Env) ([]Result, error) {
	db, err := env.NewDB(ctx)
	if err != nil {
		return nil, err
	}
	// The pool the worker command opens for the production worker counts.
	pool, err := workerPool(ctx, db, nil, jobs.Options{})
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	srv, api, err := startCP(cpfake.Options{Latency: env.Scale.SlowLatency})
	if err != nil {
		return nil, err
	}
	defer srv.Close()
	worker, err := newWorker(pool, api, prodFetch)
	if err != nil {
		return nil, err
	}
	ins, err := jobs.NewInsertClient(pool, jobs.DefaultSettings())
	if err != nil {
		return nil, err
	}
	n := env.Scale.SlowN
	makespan, failures, err := runPhases(ctx, pool, worker, n, []phase{{
		kind: jobs.KindProvision,
		insert: func(ctx context.Context, tx pgx.Tx) error {
			for range n {
				if err := request(ctx, tx, ins, newUUID()); err != nil {
					return err
				}
			}
			return nil
		},
	}})
	if err != nil {
		return nil, err
	}
	if failures > 0 {
		env.logf("slowcp: %d provision attempts failed and retried", failures)
	}
	ideal := time.Duration(n) * env.Scale.SlowLatency / prodWorkers
	return []Result{
		{"slow_cp_makespan_s", makespan.Seconds(), "s"},
		{"slow_cp_ideal_s", ideal.Seconds(), "s"},
		{"slow_cp_makespan_ratio", makespan.Seconds() / ideal.Seconds(), "x"},
	}, nil
}
