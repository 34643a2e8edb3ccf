package app

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/molecule-ai/provision-worker/internal/config"
	"github.com/molecule-ai/provision-worker/jobs"
)

// runTerminate stops (or, with --delete, removes) a workspace, in one
// transaction with its job.
func runTerminate(ctx context.Context, cli CLI, args []string, usage string) error {
	var c common
	var req jobs.TerminateRequest
	set := config.New("enqueue terminate", cli.Getenv)
	commonSettings(set, &c)
	set.String(&req.WorkspaceID, "workspace-id", "", "", "workspace UUID (required)")
	set.Bool(&req.Delete, "delete", "", false, "remove the workspace (status removed) instead of stopping it")
	if err := parseCmd(cli, set, &c, args, usage); err != nil {
		return err
	}
	req.Actor = "enqueue"
	return withTx(ctx, c, func(tx pgx.Tx, client *jobs.Client) error {
		res, err := jobs.RequestTerminate(ctx, tx, client, req)
		if err != nil {
			return err
		}
		return printResult(cli.Out, res)
	})
}
