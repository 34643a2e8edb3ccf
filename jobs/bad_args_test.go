package jobs_test

import (
	"context"
	"testing"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/jobtest"
	"github.com/molecule-ai/provision-worker/jobs"
)

// Args of the wrong shape (a hand-inserted job, an edit in River UI) name
// nothing real: the job is cancelled at once, with no CP call, instead of
// being retried for days.
func TestWork_MalformedArgsAreCancelledWithoutACPCall(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args river.JobArgs
	}{
		{"provision with a non-UUID workspace", jobs.ProvisionArgs{WorkspaceID: "ws-1'; DROP TABLE x", Generation: 1, Nonce: "n"}},
		{"terminate with a non-UUID workspace", jobs.TerminateArgs{WorkspaceID: "not-a-uuid"}},
		{"instance_terminate with a hostile instance id", jobs.InstanceTerminateArgs{
			WorkspaceID: "0b6f8f9e-6a4e-4c36-9e55-0d6c6fb1d0a1", InstanceID: "i-1/../../admin"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := jobtest.New(t, jobtest.Config{})
			res, err := e.Insert.Insert(context.Background(), tt.args, nil)
			require.NoError(t, err)
			e.WaitFor("the job to be cancelled", func() bool {
				job, err := e.Insert.JobGet(context.Background(), res.Job.ID)
				require.NoError(t, err)
				return job.State == rivertype.JobStateCancelled
			})
			job, err := e.Insert.JobGet(context.Background(), res.Job.ID)
			require.NoError(t, err)
			require.Equal(t, 1, job.Attempt)
			require.Contains(t, job.Errors[0].Error, "job args")
			require.Empty(t, e.CP.Requests())
		})
	}
}
