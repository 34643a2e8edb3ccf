package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/cp/cpfake"
	"github.com/molecule-ai/provision-worker/internal/jobtest"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/internal/testdb"
	"github.com/molecule-ai/provision-worker/jobs"
)

// The outcome hook fails while recording (a deadlock with the host's
// delete, say) on a non-last attempt: record() leaves the instance to the
// retry. The host's delete then commits, the row is stopping, and the
// retry skips. Without a list endpoint nothing else knows the instance:
// the failed record's provision.unrecorded note must hand it off
// (invariant "every instance owned", docs/design.md). (Issue 13 review,
// R1.)
func TestProvision_UnrecordedAnswerOfARetryThatSkipsIsStopped(t *testing.T) {
	t.Parallel()
	for _, noList := range []bool{false, true} {
		name := map[bool]string{false: "with list", true: "without list"}[noList]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			h := newHostWorld(t, jobtest.Config{
				Fake: cpfake.Options{NoList: noList},
				// the retry waits long enough for the host's delete to land
				Settings: jobs.Settings{BackoffBase: time.Minute, ProvisionBackoffCap: time.Hour},
			})
			id := uuid.NewString()
			h.create(t, id)
			h.fail[jobs.StatusRunning] = 1
			job := h.Provision(jobs.ProvisionRequest{WorkspaceID: id}).Job
			h.WaitFor("the provision to be retryable", func() bool {
				return jobState(t, h.Env, job.ID).State == rivertype.JobStateRetryable
			})
			live := h.CP.Live(id)
			require.Len(t, live, 1, "the CP launched it and answered 201")
			inst := live[0].InstanceID

			h.requestDelete(t, id) // the deadlock's winner commits
			h.WaitStatus(id, store.StatusRemoved)
			require.Equal(t, rivertype.JobStateCompleted, finalJob(t, h.Env, job.ID).State)
			require.Empty(t, h.CP.Live(id), "instance %s runs on, owned by nothing (row removed, no job)", inst)
			if noList {
				require.NotEmpty(t, instanceTerminates(t, h.Env, inst), "the skipping retry handed %s off from its note", inst)
			}
		})
	}
}

// Any failed record, not only the hook's, leaves the note: here the
// database refuses the first record (a trigger stands in for a deadlock
// or a lost connection), and the CP has no list endpoint. Either the
// retry finds the row moved on and hands the instance off from the note,
// or the job never runs again (an operator cancelled it) and the stop,
// finding no recorded id, stops what the note names.
func TestProvision_UnrecordedAnswerIsStoppedWithoutAList(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		cancel bool
	}{{"retry skips", false}, {"job cancelled", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			e := jobtest.New(t, jobtest.Config{
				Fake:     cpfake.Options{NoList: true},
				Settings: jobs.Settings{BackoffBase: time.Minute, ProvisionBackoffCap: time.Hour},
			})
			failFirstRecord(t, e)
			id := uuid.NewString()
			job := e.Provision(jobs.ProvisionRequest{WorkspaceID: id}).Job
			e.WaitFor("the provision to be retryable", func() bool {
				return jobState(t, e, job.ID).State == rivertype.JobStateRetryable
			})
			live := e.CP.Live(id)
			require.Len(t, live, 1, "the CP launched it and answered 201")
			inst := live[0].InstanceID
			if tc.cancel {
				_, err := e.Worker.JobCancel(ctx, job.ID)
				require.NoError(t, err)
			}

			require.NoError(t, e.Tx(func(tx pgx.Tx) error {
				_, err := jobs.RequestTerminate(ctx, tx, e.Insert, jobs.TerminateRequest{WorkspaceID: id, Delete: true})
				return err
			}))
			e.WaitStatus(id, store.StatusRemoved)
			finalJob(t, e, job.ID)
			require.Empty(t, e.CP.Live(id), "instance %s runs on, owned by nothing (row removed, no job)", inst)
			require.Equal(t, !tc.cancel, len(instanceTerminates(t, e, inst)) > 0, "handed off by the retry's skip, and only by it")
		})
	}
}

// A retry that refuses to launch again without a list endpoint fails the
// generation for good: the instance the first attempt could not record
// is handed off from the note then, not left running until the
// workspace is stopped.
func TestProvision_UnrecordedAnswerOfAFailedGenerationIsHandedOff(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{
		Fake:     cpfake.Options{NoList: true},
		Settings: jobs.Settings{BackoffBase: 10 * time.Millisecond, RefuseAmbiguousWithoutList: true},
	})
	failFirstRecord(t, e)
	id := uuid.NewString()
	job := e.Provision(jobs.ProvisionRequest{WorkspaceID: id}).Job
	require.Equal(t, rivertype.JobStateCancelled, finalJob(t, e, job.ID).State)
	require.Equal(t, store.StatusFailed, e.Workspace(id).Status)
	require.Len(t, requestsOf(e.CP, cpfake.RouteProvision), 1, "the retry launched nothing")
	var launched []string
	for _, inst := range e.CP.Instances() {
		if inst.WorkspaceID == id {
			launched = append(launched, inst.InstanceID)
		}
	}
	require.Len(t, launched, 1)
	requireTerminatedByInstanceTerminate(t, e, launched[0])
}

// failFirstRecord makes the database refuse the first record of an
// instance id (a trigger standing in for a deadlock or a lost
// connection): a recordTx failure that is not the outcome hook's.
func failFirstRecord(t *testing.T, e *jobtest.Env) {
	t.Helper()
	_, err := e.Pool.Exec(context.Background(), `
		CREATE SEQUENCE fail_once;
		CREATE FUNCTION fail_first_record() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NEW.instance_id IS NOT NULL AND nextval('fail_once') = 1 THEN
				RAISE EXCEPTION 'injected: deadlock detected';
			END IF;
			RETURN NEW;
		END $$;
		CREATE TRIGGER fail_first_record BEFORE UPDATE ON provisioner.workspaces
			FOR EACH ROW EXECUTE FUNCTION fail_first_record();`)
	require.NoError(t, err)
}

// The provision job whose record failed never runs again (an operator
// cancelled it), the row is then marked failed with no instance id (the
// sweep's provisioning deadline does this), and the host deletes or
// restarts the workspace, on each driver. Without a list endpoint only the
// note names the instance: the request must go through a terminate that
// stops it, not mark the failed row done on the spot. (Issue 13
// re-review, R1.)
func TestRequestStop_FailedRowWithAnUnstoppedNoteGoesThroughATerminate(t *testing.T) {
	t.Parallel()
	for _, d := range driverCases {
		for _, tc := range []struct {
			name    string
			request func(r requests, id string) error
			want    string
		}{
			{"delete", func(r requests, id string) error {
				_, err := r.terminate(jobs.TerminateRequest{WorkspaceID: id, Delete: true})
				return err
			}, store.StatusRemoved},
			{"restart", func(r requests, id string) error {
				_, err := r.restart(id)
				return err
			}, store.StatusRunning},
		} {
			t.Run(d.name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				url := testdb.New(t)
				e := jobtest.New(t, jobtest.Config{
					DBURL:    url,
					Fake:     cpfake.Options{NoList: true},
					Settings: jobs.Settings{BackoffBase: time.Minute, ProvisionBackoffCap: time.Hour},
				})
				failFirstRecord(t, e)
				id := uuid.NewString()
				job := e.Provision(jobs.ProvisionRequest{WorkspaceID: id}).Job
				e.WaitFor("the provision to be retryable", func() bool {
					return jobState(t, e, job.ID).State == rivertype.JobStateRetryable
				})
				live := e.CP.Live(id)
				require.Len(t, live, 1, "the CP launched it and answered 201")
				inst := live[0].InstanceID
				_, err := e.Worker.JobCancel(ctx, job.ID)
				require.NoError(t, err)
				finalJob(t, e, job.ID)
				_, err = e.Pool.Exec(ctx, `UPDATE provisioner.workspaces SET status = 'failed', last_error = 'stuck provisioning' WHERE id = $1`, id)
				require.NoError(t, err)

				inTx := d.open(t, e, url)
				require.NoError(t, inTx(true, func(r requests) error { return tc.request(r, id) }))
				e.WaitStatus(id, tc.want)
				for _, l := range e.CP.Live(id) {
					require.NotEqual(t, inst, l.InstanceID, "noted instance %s runs on after the %s", inst, tc.name)
				}
			})
		}
	}
}
