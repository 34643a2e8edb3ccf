package worker

import (
	"fmt"

	"github.com/riverqueue/river"

	"github.com/molecule-ai/provision-worker/internal/cp"
	"github.com/molecule-ai/provision-worker/jobs"
)

// badArgs checks ids decoded from a job's args (a hand-inserted job, or a
// row edited in River UI). Ids of the wrong shape name no workspace and no
// instance, so the job is cancelled rather than retried for days against
// a Postgres cast or the CP client's own refusal.
func badArgs(workspaceID, instanceID string) error {
	if !cp.ValidWorkspaceID(workspaceID) {
		return river.JobCancel(fmt.Errorf("%w: job args: workspace id must be a UUID", jobs.ErrInvalidInput))
	}
	if instanceID != "" && !cp.ValidInstanceID(instanceID) {
		return river.JobCancel(fmt.Errorf("%w: job args: instance id must match i-[0-9a-f]{8,17}", jobs.ErrInvalidInput))
	}
	return nil
}
