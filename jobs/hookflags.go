package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
)

// The host's hooks are set per worker process, but a schema's queues are
// shared by every worker on it: a plain cmd/worker beside the host's
// embedded workers used to fetch half the provisions and run them with
// no env and without telling the host's row. So the request side declares
// the contract on each job (Settings.EnvFromHost, OutcomeToHost), and a
// worker without a hook the job needs leaves the job to one that has it.

// metaHostHooks is the job metadata key that names the hooks a job needs.
const metaHostHooks = "host_hooks"

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

// hookNeeds is what a job's metadata says it needs. Jobs inserted without
// the settings carry none, so old jobs run anywhere as before.
type hookNeeds struct {
	Env     bool `json:"env,omitempty"`
	Outcome bool `json:"outcome,omitempty"`
}

// needsFor is what a job of kind inserted under s needs: a provision asks
// the env hook and tells the host; a stop and the sweep tell the host.
func needsFor(kind string, s Settings) hookNeeds {
	switch kind {
	case KindProvision:
		return hookNeeds{Env: s.EnvFromHost, Outcome: s.OutcomeToHost}
	case KindTerminate, KindOrphanSweep:
		return hookNeeds{Outcome: s.OutcomeToHost}
	}
	return hookNeeds{}
}

// markHooks writes what the job needs into its metadata, beside whatever
// else is there.
func markHooks(p *rivertype.JobInsertParams, s Settings) error {
	n := needsFor(p.Kind, s)
	if n == (hookNeeds{}) {
		return nil
	}
	meta := map[string]json.RawMessage{}
	if len(p.Metadata) > 0 {
		if err := json.Unmarshal(p.Metadata, &meta); err != nil {
			return fmt.Errorf("jobs: read job metadata: %w", err)
		}
	}
	raw, err := json.Marshal(n)
	if err != nil {
		return fmt.Errorf("jobs: mark host hooks: %w", err)
	}
	meta[metaHostHooks] = raw
	if p.Metadata, err = json.Marshal(meta); err != nil {
		return fmt.Errorf("jobs: mark host hooks: %w", err)
	}
	return nil
}

// jobNeeds reads what job needs; unreadable metadata needs nothing.
func jobNeeds(job *rivertype.JobRow) hookNeeds {
	var m struct {
		Needs hookNeeds `json:"host_hooks"`
	}
	_ = json.Unmarshal(job.Metadata, &m)
	return m.Needs
}

// missing names the hooks n needs that d lacks.
func (n hookNeeds) missing(d *Deps) []string {
	var out []string
	if n.Env && d.Env == nil {
		out = append(out, "env")
	}
	if n.Outcome && d.OnOutcome == nil {
		out = append(out, "outcome")
	}
	return out
}

// workerHooks is what a worker marks the jobs it inserts with (a
// restart's next provision, the sweep's stops): the hooks it has, so a
// hooked worker's follow-up jobs never land on a plain one.
func workerHooks(d *Deps) Settings {
	s := d.Settings
	s.EnvFromHost, s.OutcomeToHost = d.Env != nil, d.OnOutcome != nil
	return s
}

// hookMissingSnooze is how long a job waits for a worker with the hook
// (capped by Settings.SnoozeCap, bounded by MaxSnoozes).
const hookMissingSnooze = time.Second

// hookGuard runs before every job this worker works and refuses one that
// needs a hook the worker lacks: nothing is done (no CP call, no row
// change, the workspace is never marked failed), the error is loud, and
// the job is snoozed for another worker.
type hookGuard struct {
	river.HookDefaults
	deps *Deps
}

// WorkBegin implements rivertype.HookWorkBegin.
func (g *hookGuard) WorkBegin(_ context.Context, job *rivertype.JobRow) error {
	missing := jobNeeds(job).missing(g.deps)
	if len(missing) == 0 {
		return nil
	}
	g.deps.Log.Error().Str("evt", EvHookMissing).Str("kind", job.Kind).Int64("job_id", job.ID).
		Int("attempt", job.Attempt).Strs("missing", missing).
		Msg("job needs a host hook this worker does not have: not worked, snoozed for a worker that has it")
	err := fmt.Errorf("%w: %s", ErrHookMissing, strings.Join(missing, ", "))
	return g.deps.waitOrFail(job, hookMissingSnooze, err)
}

// contracts holds the settings of the insert clients built here, so a
// request knows what its client declares (River's client does not expose
// its config). Keyed by the client pointer; clients live for the process.
var contracts sync.Map

func registerContract(client any, s Settings) {
	contracts.Store(client, hookNeeds{Env: s.EnvFromHost, Outcome: s.OutcomeToHost})
}

func contractOf(client any) hookNeeds {
	n, _ := contracts.Load(client)
	c, _ := n.(hookNeeds)
	return c
}
