package app_test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/app"
	"github.com/molecule-ai/provision-worker/internal/cp/cpfake"
	"github.com/molecule-ai/provision-worker/internal/jobtest"
	"github.com/molecule-ai/provision-worker/internal/safetext"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/jobs"
)

type timelineOut struct {
	Workspace struct {
		Status string `json:"status"`
	} `json:"workspace"`
	Events []struct {
		At      time.Time      `json:"at"`
		Event   string         `json:"event"`
		JobID   int64          `json:"job_id"`
		Attempt int            `json:"attempt"`
		Fields  map[string]any `json:"fields"`
	} `json:"events"`
}

// stopAfterTwoFailures provisions, then stops against a CP that fails the
// first two DELETEs: the history has events and two attempt errors.
func stopAfterTwoFailures(t *testing.T, env *jobtest.Env) (string, int64) {
	t.Helper()
	id := uuid.NewString()
	env.ProvisionRunning(jobs.ProvisionRequest{WorkspaceID: id})
	env.CP.FailNext(cpfake.RouteTerminate, 500, 2)
	res := env.Terminate(id)
	env.WaitStatus(id, store.StatusStopped)
	return id, res.Job.ID
}

func TestTimeline_JSONMergesEventsAndAttemptErrorsInTimeOrder(t *testing.T) {
	t.Parallel()
	env := jobtest.New(t, jobtest.Config{})
	id, stopJob := stopAfterTwoFailures(t, env)

	out, err := enqueue(t, env, "timeline", "--workspace-id", id, "--json")
	require.NoError(t, err)
	var got timelineOut
	require.NoError(t, json.Unmarshal([]byte(out), &got), out)
	require.Equal(t, store.StatusStopped, got.Workspace.Status)

	var names []string
	var failedAttempts []int
	for i, ev := range got.Events {
		if i > 0 {
			require.False(t, ev.At.Before(got.Events[i-1].At), "time order at %d", i)
		}
		names = append(names, ev.Event)
		if ev.Event == "job.attempt_failed" && ev.JobID == stopJob {
			failedAttempts = append(failedAttempts, ev.Attempt)
			require.Contains(t, ev.Fields["error"], "500")
		}
	}
	require.Equal(t, []int{1, 2}, failedAttempts)
	require.Subset(t, names, []string{"provision.requested", "provision.ec2_started", "terminate.requested",
		"job.inserted", "job.completed", "provision.ec2_stopped"})
	require.Less(t, indexOf(names, "provision.requested"), indexOf(names, "terminate.requested"))
	require.Less(t, indexOf(names, "job.attempt_failed"), indexOf(names, "provision.ec2_stopped"))
}

func TestTimeline_TextIsOneLinePerEvent(t *testing.T) {
	t.Parallel()
	env := jobtest.New(t, jobtest.Config{})
	id, stopJob := stopAfterTwoFailures(t, env)

	out, err := enqueue(t, env, "timeline", "--workspace-id", id)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.True(t, strings.HasPrefix(lines[0], "workspace "+id+": stopped since "), lines[0])
	var failed []string
	for _, l := range lines[1:] {
		_, err := time.Parse("2006-01-02T15:04:05.000Z", strings.Fields(l)[0])
		require.NoError(t, err, "each line starts with its time: %q", l)
		if strings.Contains(l, "job.attempt_failed") {
			failed = append(failed, l)
		}
	}
	require.Len(t, failed, 2)
	require.Contains(t, failed[0], "job "+strconv.FormatInt(stopJob, 10)+" #1")
	require.Contains(t, failed[0], "500")
	require.Contains(t, out, "provision.ec2_stopped")
}

// A CP error (or any field) holding a C1 control, U+0085 or a bidi
// override must reach the operator's terminal escaped, not raw: the old
// output quoted a value only when it held a space.
func TestTimeline_TextQuotesEveryNonGraphicRune(t *testing.T) {
	t.Parallel()
	env := jobtest.New(t, jobtest.Config{NoStart: true})
	id := uuid.NewString()
	env.Provision(jobs.ProvisionRequest{WorkspaceID: id})
	hostile := map[string]string{
		"csi": "a\u009b2Jb", "nel": "a\u0085b", "rlo": "gnp.\u202eexe", "isolate": "a\u2066b\u2069",
		"nbsp": "a\u00a0b", "plain": "i-0123abcd",
	}
	fields := map[string]any{}
	for k, v := range hostile {
		fields[k] = v
	}
	require.NoError(t, store.MustFor("").AppendEvent(context.Background(), env.Pool,
		store.Event{WorkspaceID: id, Event: "test.hostile", Actor: "ops", Fields: fields}))

	out, err := enqueue(t, env, "timeline", "--workspace-id", id)
	require.NoError(t, err)
	for _, r := range out {
		require.True(t, r == '\n' || safetext.Graphic(r), "output holds %U:\n%s", r, out)
	}
	for k, v := range hostile {
		want := k + "=" + strconv.Quote(v)
		if k == "plain" {
			want = k + "=" + v
		}
		require.Contains(t, out, want)
	}
}

func TestTimeline_RejectsUnknownOrMalformedWorkspace(t *testing.T) {
	t.Parallel()
	env := jobtest.New(t, jobtest.Config{NoStart: true})
	for _, id := range []string{uuid.NewString(), "not-a-uuid", ""} {
		out, err := enqueue(t, env, "timeline", "--workspace-id", id)
		require.Error(t, err, id)
		require.True(t, app.IsBadInput(err), "exit 2 for %q, got %v", id, err)
		require.Empty(t, out)
	}
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}
