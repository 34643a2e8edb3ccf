// Package hookmeta is the mark a job carries in its River metadata naming
// the host hooks it needs. The insert clients (package jobs) write it and
// the worker (internal/worker) reads it; neither may import the other's
// side, and the mark is not part of the public API.
package hookmeta

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
)

// Key is the job metadata key that names the hooks a job needs.
const Key = "host_hooks"

// Needs is what a job's metadata says it needs. Jobs inserted without
// the settings carry none, so old jobs run anywhere as before.
type Needs struct {
	Env     bool `json:"env,omitempty"`
	Outcome bool `json:"outcome,omitempty"`
}

// Mark writes n into p's metadata, beside whatever else is there.
func Mark(p *rivertype.JobInsertParams, n Needs) error {
	if n == (Needs{}) {
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
	meta[Key] = raw
	if p.Metadata, err = json.Marshal(meta); err != nil {
		return fmt.Errorf("jobs: mark host hooks: %w", err)
	}
	return nil
}

// Of reads what job needs; unreadable metadata needs nothing.
func Of(job *rivertype.JobRow) Needs {
	var m struct {
		Needs Needs `json:"host_hooks"`
	}
	_ = json.Unmarshal(job.Metadata, &m)
	return m.Needs
}

// Missing names the hooks n needs that a worker with hasEnv and
// hasOutcome lacks.
func (n Needs) Missing(hasEnv, hasOutcome bool) []string {
	var out []string
	if n.Env && !hasEnv {
		out = append(out, "env")
	}
	if n.Outcome && !hasOutcome {
		out = append(out, "outcome")
	}
	return out
}

// InsertHook marks every job a client inserts with what For says a job
// of its kind needs.
type InsertHook struct {
	river.HookDefaults
	For func(kind string) (env, outcome bool)
}

// InsertBegin implements rivertype.HookInsertBegin.
func (h *InsertHook) InsertBegin(_ context.Context, p *rivertype.JobInsertParams) error {
	env, outcome := h.For(p.Kind)
	return Mark(p, Needs{Env: env, Outcome: outcome})
}
