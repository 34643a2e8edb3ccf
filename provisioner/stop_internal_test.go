package provisioner

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/handoff"
)

// Stop's cancel phase used to last 10 s, less than one hand-off
// transaction (15 s): a job cancelled right after the CP answered could
// find the pool closed under its record or its hand-off to an
// instance_terminate, and the instance was owned by nothing. The window
// must outlast the record, the note of a failed record and the hand-off,
// back to back. (Review 13, finding 12; its re-review, finding 5.)
func TestStop_CancelWindowOutlastsARecordAndItsHandOff(t *testing.T) {
	t.Parallel()
	require.GreaterOrEqual(t, cancelWindow, 3*handoff.Timeout)
}
