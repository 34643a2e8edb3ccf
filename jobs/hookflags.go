package jobs

import (
	"errors"
	"sync"

	"github.com/molecule-ai/provision-worker/internal/hookmeta"
)

// The host's hooks are set per worker process, but a schema's queues are
// shared by every worker on it: a plain cmd/worker beside the host's
// embedded workers used to fetch half the provisions and run them with
// no env and without telling the host's row. So the request side declares
// the contract on each job (Settings.EnvFromHost, OutcomeToHost), and a
// worker without a hook the job needs leaves the job to one that has it.

// EvHookMissing is logged (error level) when a worker fetched a job that
// needs a host hook it does not have, and snoozed it instead of working it.
const EvHookMissing = "job.hook_missing"

// ErrHookMissing is the error of a job whose worker lacks a hook the job
// needs: the job is snoozed (then, once its snooze budget is spent,
// retried and finally discarded) without any CP call or row change.
var ErrHookMissing = errors.New("this worker lacks a host hook the job needs (every worker of the schema must run with the host's hooks)")

// ErrEnvWithHostEnv refuses a ProvisionRequest that carries Env through an
// insert client built with Settings.EnvFromHost: the host's env hook
// supplies the env, and storing it in the worker's table too would keep
// the host's secrets in plain jsonb for nothing.
var ErrEnvWithHostEnv = errors.New("jobs: the request carries Env, but its insert client declares EnvFromHost: the env hook supplies the env; pass none")

// NeedsHooks is what a job of kind inserted under s needs: a provision
// asks the env hook (EnvFromHost) and tells the host (OutcomeToHost); a
// stop and the sweep tell the host.
func (s Settings) NeedsHooks(kind string) (env, outcome bool) {
	switch kind {
	case KindProvision:
		return s.EnvFromHost, s.OutcomeToHost
	case KindTerminate, KindOrphanSweep:
		return false, s.OutcomeToHost
	}
	return false, false
}

// contracts holds the settings of the insert clients built here, so a
// request knows what its client declares (River's client does not expose
// its config). Keyed by the client pointer; clients live for the process.
var contracts sync.Map

func registerContract(client any, s Settings) {
	contracts.Store(client, hookmeta.Needs{Env: s.EnvFromHost, Outcome: s.OutcomeToHost})
}

func contractOf(client any) hookmeta.Needs {
	n, _ := contracts.Load(client)
	c, _ := n.(hookmeta.Needs)
	return c
}
