package app

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/molecule-ai/provision-worker/internal/config"
	"github.com/molecule-ai/provision-worker/jobs"
)

// runProvision creates or starts a workspace, in one transaction with
// its job.
func runProvision(ctx context.Context, cli CLI, args []string, usage string) error {
	var c common
	var req jobs.ProvisionRequest
	env := envFlag{lookup: cli.lookupEnv}
	set := config.New("enqueue provision", cli.Getenv)
	commonSettings(set, &c)
	set.String(&req.WorkspaceID, "workspace-id", "", "", "workspace UUID (required)")
	set.String(&req.Runtime, "runtime", "", "", "runtime to run (kept from the last generation when empty)")
	set.Int(&req.Tier, "tier", "", 0, 0, jobs.MaxTier, "instance tier (kept from the last generation when 0)")
	set.String(&req.PlatformURL, "platform-url", "", "", "platform URL the workspace calls back (http/https)")
	set.FlagSet().Var(&env, "env", "K=V to pass to the workspace, repeatable; K alone takes the value from this process's environment (keeps secrets out of ps)")
	if err := parseCmd(cli, set, &c, args, usage); err != nil {
		return err
	}
	if err := env.err; err != nil {
		return err
	}
	if env.set {
		req.Env = env.values
	}
	req.Actor = "enqueue"
	return withTx(ctx, c, func(tx pgx.Tx, client *jobs.Client) error {
		res, err := jobs.RequestProvision(ctx, tx, client, req)
		if err != nil {
			return err
		}
		return printResult(cli.Out, res)
	})
}

// envFlag collects repeated --env K=V (or --env K, read from the
// environment). Values are never echoed in errors: they may be secrets.
type envFlag struct {
	lookup func(string) (string, bool)
	values map[string]string
	set    bool
	err    error
}

func (e *envFlag) String() string { return "" }

func (e *envFlag) Set(s string) error {
	e.set = true
	if e.values == nil {
		e.values = map[string]string{}
	}
	k, v, hasValue := strings.Cut(s, "=")
	if k == "" {
		e.err = fmt.Errorf("%w: --env: want K=V or K, got an empty key", config.ErrUsage)
		return e.err
	}
	if !hasValue {
		// An unset name is a typo in a secret's name more often than
		// not: provisioning with "" would ship an empty secret. A name
		// set to the empty string is taken as it is.
		var ok bool
		if v, ok = e.lookup(k); !ok {
			e.err = fmt.Errorf("%w: --env: %s is not set in this environment (use %s= for an empty value)", config.ErrUsage, k, k)
			return e.err
		}
	}
	if _, dup := e.values[k]; dup {
		e.err = fmt.Errorf("%w: --env: %s given twice", config.ErrUsage, k)
		return e.err
	}
	e.values[k] = v
	return nil
}
