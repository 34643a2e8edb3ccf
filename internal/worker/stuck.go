package worker

import (
	"errors"
	"regexp"

	"github.com/riverqueue/river/rivertype"
	"github.com/rs/zerolog"

	"github.com/molecule-ai/provision-worker/internal/obs"
)

// A stop that cannot finish must be visible early. A correct CP whose
// empty list page this client could not decode left 61 of 200 stops
// retrying with one identical error; the only alarm was terminate.dead,
// three days later. So when a terminate has failed the same way
// TerminateStuckAfter times in a row, the worker says so once, at error
// level and in a counter, and goes on retrying.

// digitRuns are folded out of an error's text before comparing, so
// "status 502" and "status 503", or "<unstructured body, 19 bytes>" and
// "..., 20 bytes>", count as the same failure.
var digitRuns = regexp.MustCompile(`[0-9]+`)

func errorClass(msg string) string { return digitRuns.ReplaceAllString(msg, "#") }

// stuckStreakReached reports whether err, the error this attempt is about
// to record, completes a streak of exactly n attempts failing the same
// way. River has not yet appended this attempt's error to job.Errors, and
// a snooze records none, so the streak is err plus the last n-1 recorded
// errors. Exactly n, not at least n: one event per streak, not one per
// attempt for three days.
func stuckStreakReached(job *rivertype.JobRow, err error, n int) bool {
	if n <= 0 || len(job.Errors) < n-1 {
		return false
	}
	class := errorClass(err.Error())
	prev := job.Errors[len(job.Errors)-(n-1):]
	for _, e := range prev {
		if errorClass(e.Error) != class {
			return false
		}
	}
	before := len(job.Errors) - n
	return before < 0 || errorClass(job.Errors[before].Error) != class
}

// noteIfStuck emits terminate.stuck when ret (what the attempt returns to
// River) completes a streak.
func (d *Deps) noteIfStuck(job *rivertype.JobRow, workspaceID, instanceID string, ret error) {
	var snooze *rivertype.JobSnoozeError
	if ret == nil || errors.As(ret, &snooze) || !stuckStreakReached(job, ret, d.Settings.TerminateStuckAfter) {
		return
	}
	if d.Metrics != nil {
		d.Metrics.TerminateStuck.WithLabelValues(job.Kind).Inc()
	}
	obs.Event(d.Log, zerolog.ErrorLevel, obs.EvTerminateStuck, obs.Fields{
		WorkspaceID: workspaceID, InstanceID: instanceID, JobID: job.ID, Attempt: job.Attempt,
		Extra: map[string]any{"kind": job.Kind, "error": ret.Error(), "failed_in_a_row": d.Settings.TerminateStuckAfter,
			"max_attempts": job.MaxAttempts}})
}
