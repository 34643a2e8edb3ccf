package jobs_test

import (
	"context"
	"fmt"
	"log"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/molecule-ai/provision-worker/internal/testdb"
	"github.com/molecule-ai/provision-worker/jobs"
)

// A request handler creates a workspace and enqueues its provision in its
// own transaction: both commit together, or, when the handler fails
// after enqueueing, neither exists.
func Example_requestProvision() {
	ctx := context.Background()
	dbURL, drop, err := testdb.Create(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer drop()
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	// Processes that only enqueue use an insert-only client.
	client, err := jobs.NewInsertClient(pool, jobs.Settings{})
	if err != nil {
		log.Fatal(err)
	}

	const id = "6f1c1f6e-9d2a-4a57-a0a4-9a3f5b0c2d11"
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		// ... the handler's own writes go here, in the same tx ...
		res, err := jobs.RequestProvision(ctx, tx, client, jobs.ProvisionRequest{
			WorkspaceID: id,
			Runtime:     "python",
			Tier:        2,
			Env:         map[string]string{"API_KEY": "kept beside the row, never in job args"},
		})
		if err != nil {
			return err // rolls back the row and the job together
		}
		fmt.Printf("%s: %s generation %d, job %s on queue %s\n",
			res.Action, res.Workspace.Status, res.Workspace.Generation, res.Job.Kind, res.Job.Queue)
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}

	// Asking again while it provisions is a no-op that returns the live job.
	_ = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		res, err := jobs.RequestProvision(ctx, tx, client, jobs.ProvisionRequest{WorkspaceID: id})
		if err != nil {
			return err
		}
		fmt.Printf("%s: job %s still %s\n", res.Action, res.Job.Kind, res.Job.State)
		return nil
	})

	// Output:
	// created: provisioning generation 1, job workspace_provision on queue provision
	// noop: job workspace_provision still available
}
