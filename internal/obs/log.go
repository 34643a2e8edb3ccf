// Package obs holds the worker's observability: the zerolog JSON logger,
// the structured event names (kept from the reference client where the
// meaning matches, so existing log queries keep working) and the
// Prometheus metrics.
package obs

import (
	"fmt"
	"io"
	"time"

	"github.com/rs/zerolog"
)

// Structured event names. One JSON line each, with workspace_id,
// instance_id, job_id and attempt where known.
const (
	EvProvisionRequested = "provision.requested"
	EvProvisionStart     = "provision.start"
	EvProvisionSkip      = "provision.skip_existing"
	EvProvisionAdopted   = "provision.adopted"
	EvProvisionStarted   = "provision.ec2_started"
	EvProvisionStray     = "provision.stray_instance"
	EvProvisionFailed    = "provision.failed"
	EvProvisionRetry     = "provision.retry"
	EvTerminateRequested = "terminate.requested"
	EvTerminateStart     = "terminate.start"
	EvTerminateRetry     = "terminate.retry"
	EvTerminateWait      = "terminate.wait_provision"
	EvTerminateDead      = "terminate.dead"
	EvTerminateStuck     = "terminate.stuck"
	EvProvisionStopped   = "provision.ec2_stopped"
	EvOrphanFound        = "orphan.found"
	EvOrphanTerminated   = "orphan.terminated"
	EvOrphanSkipped      = "orphan.skipped"
	EvSweepDone          = "sweep.done"
	EvSweepBreakerOpen   = "sweep.breaker_open"
	EvSweepSecondOwner   = "sweep.second_owner_suspected"
	EvSweepStaleRow      = "sweep.stale_row"
	EvSweepNoList        = "sweep.cp_list_unsupported"
	EvSweepUnreadable    = "sweep.cp_unreadable_instance"
	EvJobDiscarded       = "job.discarded"
	// EvWorkspaceImported is a host's running workspace registered as
	// owned at cutover (jobs.Import): the first line of its timeline.
	EvWorkspaceImported = "workspace.imported"
	// The host's hooks (jobs.EnvFunc, jobs.OutcomeFunc). An env hook's
	// error text is never in these: only that it failed.
	EvEnvHookFailed    = "provision.env_hook_failed"
	EvStoredEnvIgnored = "provision.stored_env_ignored"
	EvOutcomeHookFail  = "outcome_hook.failed"
	// EvProvisionUnrecorded is an instance id the CP answered that a
	// non-final provision attempt failed to record: the durable note that
	// owns it until a later attempt records it or hands it off.
	EvProvisionUnrecorded = "provision.unrecorded"
)

// NewLogger returns a JSON logger at level ("debug", "info", "warn",
// "error"), with RFC 3339 millisecond timestamps.
func NewLogger(w io.Writer, level string) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil || level == "" {
		return zerolog.Logger{}, fmt.Errorf("log level: want debug, info, warn or error, got %q", level)
	}
	zerolog.TimeFieldFormat = time.RFC3339Nano
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}

// Fields are the ids an event carries. Extra holds anything else (states,
// counts, the CP's error field); never env values or credentials.
type Fields struct {
	WorkspaceID string
	InstanceID  string
	JobID       int64
	Attempt     int
	Extra       map[string]any
}

// Event writes one structured line named name at level.
func Event(log zerolog.Logger, level zerolog.Level, name string, f Fields) {
	e := log.WithLevel(level).Str("evt", name)
	if f.WorkspaceID != "" {
		e = e.Str("workspace_id", f.WorkspaceID)
	}
	if f.InstanceID != "" {
		e = e.Str("instance_id", f.InstanceID)
	}
	if f.JobID != 0 {
		e = e.Int64("job_id", f.JobID).Int("attempt", f.Attempt)
	}
	if len(f.Extra) > 0 {
		e = e.Fields(f.Extra)
	}
	e.Msg(name)
}

// StopEvents are the timeline events that confirm an instance stopped:
// adoption refuses their instances, and a note (EvProvisionUnrecorded)
// one of them names needs no stop.
var StopEvents = []string{EvProvisionStopped, EvOrphanTerminated}
