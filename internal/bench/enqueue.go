package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/jobs"
)

// enqueueVariant is one way a handler's transaction can be written.
type enqueueVariant func(ctx context.Context, tx pgx.Tx, c *jobs.Client, id string) error

// rowOnly is the handler without a queue: it upserts its row and commits.
func rowOnly(ctx context.Context, tx pgx.Tx, _ *jobs.Client, id string) error {
	_, _, err := benchStore.Create(ctx, tx, store.Workspace{ID: id, Nonce: store.NewNonce(), Runtime: "bench"}, nil)
	return err
}

// rowChange is the same row change RequestProvision writes (row, env,
// timeline line) without the job insert: "with and without the job
// insert" of the issue, so the ratio is what the outbox itself costs.
func rowChange(ctx context.Context, tx pgx.Tx, _ *jobs.Client, id string) error {
	ws, _, err := benchStore.Create(ctx, tx, store.Workspace{ID: id, Nonce: store.NewNonce(), Runtime: "bench"},
		map[string]string{"K": "v"})
	if err != nil {
		return err
	}
	return benchStore.AppendEvent(ctx, tx, store.Event{WorkspaceID: ws.ID, Event: "provision.requested", Actor: "bench",
		Fields: map[string]any{"generation": ws.Generation}})
}

// rowAndRiver is the handler on bare River: the same row plus one InsertTx
// of the same job args, uniqueness included. It is River's own ceiling.
func rowAndRiver(ctx context.Context, tx pgx.Tx, c *jobs.Client, id string) error {
	nonce := store.NewNonce()
	if _, _, err := benchStore.Create(ctx, tx, store.Workspace{ID: id, Nonce: nonce, Runtime: "bench"}, nil); err != nil {
		return err
	}
	_, err := c.InsertTx(ctx, tx, jobs.ProvisionArgs{WorkspaceID: id, Generation: 1, Nonce: nonce}, nil)
	return err
}

// request is the handler on this library: jobs.RequestProvision.
func request(ctx context.Context, tx pgx.Tx, c *jobs.Client, id string) error {
	_, err := jobs.RequestProvision(ctx, tx, c, jobs.ProvisionRequest{
		WorkspaceID: id, Runtime: "bench", Env: map[string]string{"K": "v"}, Actor: "bench",
	})
	return err
}

func timedTx(ctx context.Context, pool *pgxpool.Pool, c *jobs.Client, v enqueueVariant) (time.Duration, error) {
	id := newUUID()
	start := time.Now()
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return v(ctx, tx, c, id) })
	return time.Since(start), err
}

// Enqueue is figure 1: a handler transaction's latency without and with
// the provision job, measured interleaved (row, row+River, request, …) so
// drift in the machine hits every variant alike.
func Enqueue(ctx context.Context, env *Env) ([]Result, error) {
	db, err := env.NewDB(ctx)
	if err != nil {
		return nil, err
	}
	counter := &queryCounter{}
	pool, err := tracedPool(ctx, db, counter)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	c, err := jobs.NewInsertClient(pool, jobs.DefaultSettings())
	if err != nil {
		return nil, err
	}
	variants := []enqueueVariant{rowOnly, rowAndRiver, rowChange, request}
	lat := make([][]time.Duration, len(variants))
	queries := make([]int64, len(variants)) // statements per transaction, BEGIN and COMMIT included
	warmup := min(50, env.Scale.EnqueueSamples)
	for i := range warmup + env.Scale.EnqueueSamples {
		for v, fn := range variants {
			before := counter.n.Load()
			d, err := timedTx(ctx, pool, c, fn)
			queries[v] = counter.n.Load() - before
			if err != nil {
				return nil, fmt.Errorf("enqueue variant %d: %w", v, err)
			}
			if i >= warmup {
				lat[v] = append(lat[v], d)
			}
		}
	}
	row, river, change, req := lat[0], lat[1], lat[2], lat[3]
	return []Result{
		{"enqueue_row_only_p50", quantile(row, 0.5), "ms"},
		{"enqueue_row_only_p99", quantile(row, 0.99), "ms"},
		{"enqueue_row_river_p50", quantile(river, 0.5), "ms"},
		{"enqueue_row_river_p99", quantile(river, 0.99), "ms"},
		{"enqueue_row_change_p50", quantile(change, 0.5), "ms"},
		{"enqueue_row_change_p99", quantile(change, 0.99), "ms"},
		{"enqueue_request_p50", quantile(req, 0.5), "ms"},
		{"enqueue_request_p99", quantile(req, 0.99), "ms"},
		{"enqueue_overhead_ratio_p50", quantile(req, 0.5) / quantile(change, 0.5), "x"},
		{"enqueue_overhead_ratio_p99", quantile(req, 0.99) / quantile(change, 0.99), "x"},
		{"enqueue_vs_bare_row_ratio_p50", quantile(req, 0.5) / quantile(row, 0.5), "x"},
		{"enqueue_vs_river_ratio_p50", quantile(req, 0.5) / quantile(river, 0.5), "x"},
		{"enqueue_row_only_queries", float64(queries[0]), "count"},
		{"enqueue_row_river_queries", float64(queries[1]), "count"},
		{"enqueue_row_change_queries", float64(queries[2]), "count"},
		{"enqueue_request_queries", float64(queries[3]), "count"},
	}, nil
}

// Bulk is figure 2: an org import, N provisions in one transaction,
// beside the same rows and jobs written on bare River one by one, and
// River's InsertManyTx (jobs only) as the ceiling of batching; then the
// same import through jobs.RequestProvisionMany beside River's
// InsertManyTx of N no-op jobs, measured back to back.
func Bulk(ctx context.Context, env *Env) ([]Result, error) {
	pool, err := env.NewDB(ctx)
	if err != nil {
		return nil, err
	}
	c, err := jobs.NewInsertClient(pool, jobs.DefaultSettings())
	if err != nil {
		return nil, err
	}
	n := env.Scale.BulkN
	riverLoop, err := bulkTx(ctx, pool, c, n, rowAndRiver)
	if err != nil {
		return nil, fmt.Errorf("bulk on bare river: %w", err)
	}
	ours, err := bulkTx(ctx, pool, c, n, request)
	if err != nil {
		return nil, fmt.Errorf("bulk request: %w", err)
	}
	many, err := insertMany(ctx, pool, c, n)
	if err != nil {
		return nil, fmt.Errorf("bulk insert many: %w", err)
	}
	noop, err := timedInsertMany(ctx, pool, c, noopParams(n))
	if err != nil {
		return nil, fmt.Errorf("bulk insert many no-op: %w", err)
	}
	batch, err := requestMany(ctx, pool, c, n)
	if err != nil {
		return nil, fmt.Errorf("bulk request many: %w", err)
	}
	return []Result{
		{"bulk_enqueue_seconds", ours.Seconds(), "s"},
		{"bulk_enqueue_rows_jobs_per_s", perSecond(n, ours), "/s"},
		{"bulk_row_river_per_s", perSecond(n, riverLoop), "/s"},
		{"bulk_enqueue_vs_river_ratio", riverLoop.Seconds() / ours.Seconds(), "x"},
		{"bulk_river_insertmany_jobs_per_s", perSecond(n, many), "/s"},
		{"bulk_many_seconds", batch.Seconds(), "s"},
		{"bulk_many_workspaces_per_s", perSecond(n, batch), "/s"},
		{"bulk_river_insertmany_noop_jobs_per_s", perSecond(n, noop), "/s"},
		{"bulk_many_vs_insertmany_ratio", perSecond(n, batch) / perSecond(n, noop), "x"},
	}, nil
}

func bulkTx(ctx context.Context, pool *pgxpool.Pool, c *jobs.Client, n int, v enqueueVariant) (time.Duration, error) {
	start := time.Now()
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		for range n {
			if err := v(ctx, tx, c, newUUID()); err != nil {
				return err
			}
		}
		return nil
	})
	return time.Since(start), err
}

func insertMany(ctx context.Context, pool *pgxpool.Pool, c *jobs.Client, n int) (time.Duration, error) {
	params := make([]river.InsertManyParams, n)
	for i := range params {
		params[i] = river.InsertManyParams{Args: jobs.ProvisionArgs{WorkspaceID: newUUID(), Generation: 1, Nonce: store.NewNonce()}}
	}
	return timedInsertMany(ctx, pool, c, params)
}

// noopParams are N of the throughput figure's no-op jobs (no uniqueness):
// River's own ceiling for N jobs in one InsertManyTx. No worker runs in
// this figure's database, so nothing works them.
func noopParams(n int) []river.InsertManyParams {
	params := make([]river.InsertManyParams, n)
	for i := range params {
		params[i] = river.InsertManyParams{Args: noopArgs{Seq: i}}
	}
	return params
}

// requestMany is the import through this library: N new workspaces, each
// with its env, in one RequestProvisionMany.
func requestMany(ctx context.Context, pool *pgxpool.Pool, c *jobs.Client, n int) (time.Duration, error) {
	reqs := make([]jobs.ProvisionRequest, n)
	for i := range reqs {
		reqs[i] = jobs.ProvisionRequest{WorkspaceID: newUUID(), Runtime: "bench", Env: map[string]string{"K": "v"}, Actor: "bench"}
	}
	start := time.Now()
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		_, err := jobs.RequestProvisionMany(ctx, tx, c, reqs)
		return err
	})
	return time.Since(start), err
}

func timedInsertMany(ctx context.Context, pool *pgxpool.Pool, c *jobs.Client, params []river.InsertManyParams) (time.Duration, error) {
	start := time.Now()
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		_, err := c.InsertManyTx(ctx, tx, params)
		return err
	})
	return time.Since(start), err
}
