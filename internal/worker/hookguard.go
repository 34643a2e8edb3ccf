package worker

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/molecule-ai/provision-worker/internal/hookmeta"
	"github.com/molecule-ai/provision-worker/jobs"
)

// workerHooks is what a worker marks the jobs it inserts with (a
// restart's next provision, the sweep's stops): the hooks it has, so a
// hooked worker's follow-up jobs never land on a plain one.
func workerHooks(d *Deps) jobs.Settings {
	s := d.Settings
	s.EnvFromHost, s.OutcomeToHost = d.Env != nil, d.OnOutcome != nil
	return s
}

// hookMissingSnooze is how long a job waits for a worker with the hook
// (capped by Settings.SnoozeCap, bounded by MaxSnoozes).
const hookMissingSnooze = time.Second

// hookGuard runs before every job this worker works and refuses one that
// needs a hook the worker lacks (jobs.Settings.EnvFromHost,
// OutcomeToHost): nothing is done (no CP call, no row change, the
// workspace is never marked failed), the error is loud, and the job is
// snoozed for another worker.
type hookGuard struct {
	river.HookDefaults
	deps *Deps
}

// WorkBegin implements rivertype.HookWorkBegin.
func (g *hookGuard) WorkBegin(_ context.Context, job *rivertype.JobRow) error {
	missing := hookmeta.Of(job).Missing(g.deps.Env != nil, g.deps.OnOutcome != nil)
	if len(missing) == 0 {
		return nil
	}
	g.deps.Log.Error().Str("evt", jobs.EvHookMissing).Str("kind", job.Kind).Int64("job_id", job.ID).
		Int("attempt", job.Attempt).Strs("missing", missing).
		Msg("job needs a host hook this worker does not have: not worked, snoozed for a worker that has it")
	err := fmt.Errorf("%w: %s", jobs.ErrHookMissing, strings.Join(missing, ", "))
	return g.deps.waitOrFail(job, hookMissingSnooze, err)
}
