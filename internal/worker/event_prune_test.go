package worker_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/jobtest"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/internal/worker"
	"github.com/molecule-ai/provision-worker/jobs"
)

// seedEvents appends n timeline events for workspaceID, dated age ago.
func seedEvents(t *testing.T, e *jobtest.Env, workspaceID string, n int, age time.Duration) {
	t.Helper()
	ctx := context.Background()
	st := store.MustFor(e.Deps.Settings.Schema)
	for i := range n {
		require.NoError(t, st.AppendEvent(ctx, e.Pool, store.Event{WorkspaceID: workspaceID, Event: "test.seeded",
			Fields: map[string]any{"i": i}}))
	}
	_, err := e.Pool.Exec(ctx, `UPDATE `+e.Deps.Settings.Schema+`.workspace_events
		SET at = now() - $2::interval WHERE workspace_id = $1`, workspaceID, age.String())
	require.NoError(t, err)
}

func eventCount(t *testing.T, e *jobtest.Env, workspaceID string) int {
	t.Helper()
	evs, err := store.MustFor(e.Deps.Settings.Schema).Events(context.Background(), e.Pool, workspaceID)
	require.NoError(t, err)
	return len(evs)
}

// The pruner runs only as the periodic job the worker client registers:
// nothing here inserts it, so without the registration no prune job
// appears and the wait fails. Batches of 2 over 5 old events make it
// loop three times (2, 2, 1) before a short batch ends it.
func TestEventPrune_PeriodicJobPrunesOldEventsAndKeepsNewer(t *testing.T) {
	prune := jobs.PruneSettings{Interval: time.Hour, BatchSize: 2, Retention: 24 * time.Hour}
	e := jobtest.New(t, jobtest.Config{NoStart: true, Options: jobs.Options{Prune: &prune}})
	old, recent, young := uuid.NewString(), uuid.NewString(), uuid.NewString()
	seedEvents(t, e, old, 5, 48*time.Hour)
	seedEvents(t, e, recent, 2, 23*time.Hour)
	seedEvents(t, e, young, 1, time.Minute)

	e.Start()
	var job *rivertype.JobRow
	e.WaitFor("periodic prune completed", func() bool {
		for _, j := range e.JobsOfKind(worker.KindEventPrune) {
			if j.State == rivertype.JobStateCompleted {
				job = j
				return true
			}
		}
		return false
	})

	require.Zero(t, eventCount(t, e, old), "events older than the retention are pruned")
	require.Equal(t, 2, eventCount(t, e, recent), "events inside the retention are kept")
	require.Equal(t, 1, eventCount(t, e, young))
	var out worker.PruneResult
	require.NoError(t, json.Unmarshal(job.Output(), &out))
	require.Equal(t, int64(5), out.Deleted)
	require.Equal(t, jobs.QueueMaintenance, job.Queue)
	require.NotNil(t, job.UniqueKey, "the prune is unique while unfinished")
	require.Contains(t, e.Logs.String(), `"evt":"`+worker.EvEventsPruned+`"`)

	// A finished prune does not block the next one.
	res, err := e.Insert.Insert(context.Background(), worker.EventPruneArgs{}, nil)
	require.NoError(t, err)
	require.False(t, res.UniqueSkippedAsDuplicate, "a completed prune must not block the next")
}

// Two prunes never run at once, whichever replica inserts them: while
// one is unfinished, inserting another is skipped by River's unique index.
func TestEventPrune_OneUnfinishedAtATime(t *testing.T) {
	e := jobtest.New(t, jobtest.Config{NoStart: true})
	ctx := context.Background()
	first, err := e.Insert.Insert(ctx, worker.EventPruneArgs{}, nil)
	require.NoError(t, err)
	require.False(t, first.UniqueSkippedAsDuplicate)
	second, err := e.Insert.Insert(ctx, worker.EventPruneArgs{}, nil)
	require.NoError(t, err)
	require.True(t, second.UniqueSkippedAsDuplicate, "a second prune while one is unfinished")
	require.Equal(t, first.Job.ID, second.Job.ID)
	require.Len(t, e.JobsOfKind(worker.KindEventPrune), 1)
}

// Zero fields take the defaults one by one, and bad settings refuse to
// build the worker client.
func TestEventPrune_Settings(t *testing.T) {
	require.Equal(t, jobs.PruneSettings{Interval: time.Hour, BatchSize: 10000, Retention: 90 * 24 * time.Hour},
		jobs.PruneSettings{}.Or(jobs.DefaultPruneSettings()))
	require.Equal(t, jobs.PruneSettings{Interval: time.Hour, BatchSize: 7, Retention: time.Hour},
		jobs.PruneSettings{BatchSize: 7, Retention: time.Hour}.Or(jobs.DefaultPruneSettings()))
	for _, tc := range []struct {
		name string
		s    jobs.PruneSettings
		want string
	}{
		{"defaults", jobs.DefaultPruneSettings(), ""},
		{"negative retention", jobs.PruneSettings{Interval: time.Hour, BatchSize: 1, Retention: -time.Hour}, "EVENT_RETENTION"},
		{"negative interval", jobs.PruneSettings{Interval: -time.Hour, BatchSize: 1, Retention: time.Hour}, "EVENT_PRUNE_INTERVAL"},
		{"negative batch", jobs.PruneSettings{Interval: time.Hour, BatchSize: -1, Retention: time.Hour}, "EVENT_PRUNE_BATCH_SIZE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.s.Validate()
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.want)
			_, err = worker.NewWorkerClient(nil, &worker.Deps{}, jobs.Options{Prune: &tc.s})
			require.ErrorContains(t, err, tc.want)
		})
	}
}
