// Package budget sets each job's attempt budget at insert time. Both the
// insert clients (package jobs) and the worker's client (internal/worker)
// carry the hook, with the budgets of jobs.Settings.MaxAttempts, so a job
// gets the same budget whoever inserts it.
package budget

import (
	"context"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
)

// Hook sets MaxAttempts of each inserted job from For; a kind For answers
// 0 keeps the budget its InsertOpts gave it.
type Hook struct {
	river.HookDefaults
	For func(kind string) int
}

// InsertBegin implements rivertype.HookInsertBegin.
func (h *Hook) InsertBegin(_ context.Context, p *rivertype.JobInsertParams) error {
	if n := h.For(p.Kind); n > 0 {
		p.MaxAttempts = n
	}
	return nil
}
