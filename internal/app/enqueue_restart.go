package app

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/molecule-ai/provision-worker/internal/config"
	"github.com/molecule-ai/provision-worker/jobs"
)

// runRestart stops a workspace and starts its next generation.
func runRestart(ctx context.Context, cli CLI, args []string, usage string) error {
	var c common
	var id string
	set := config.New("enqueue restart", cli.Getenv)
	commonSettings(set, &c)
	set.String(&id, "workspace-id", "", "", "workspace UUID (required)")
	if err := parseCmd(cli, set, &c, args, usage); err != nil {
		return err
	}
	return withTx(ctx, c, func(tx pgx.Tx, client *jobs.Client) error {
		res, err := jobs.RequestRestart(ctx, tx, client, id, "enqueue")
		if err != nil {
			return err
		}
		return printResult(cli.Out, res)
	})
}
