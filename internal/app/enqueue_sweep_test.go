package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/app"
	"github.com/molecule-ai/provision-worker/internal/jobtest"
	"github.com/molecule-ai/provision-worker/internal/sweep"
	"github.com/molecule-ai/provision-worker/jobs"
)

func TestEnqueueSweep_WaitPrintsCounts(t *testing.T) {
	t.Parallel()
	settings := jobs.DefaultSweepSettings()
	settings.Interval = time.Hour
	e := jobtest.New(t, jobtest.Config{Options: jobs.Options{Sweep: &settings}})
	// An instance the database has never seen, older than the grace period.
	e.CP.AddInstance("0b6f8f9e-6a4e-4c36-9e55-0d6c6fb1d0a1", "running", time.Now().Add(-time.Hour))

	var out bytes.Buffer
	cli := app.CLI{Out: &out, Err: &bytes.Buffer{}, Getenv: func(k string) string {
		if k == "DATABASE_URL" {
			return e.DBURL
		}
		return ""
	}}
	err := app.RunEnqueue(context.Background(), cli, []string{"sweep", "--dry-run", "--force", "--wait", "--wait-timeout", "30s"})
	require.NoError(t, err)

	var res sweep.Result
	require.NoError(t, json.Unmarshal(out.Bytes(), &res), out.String())
	require.True(t, res.DryRun)
	require.Equal(t, 1, res.ExaminedInstances)
	require.Equal(t, 1, res.Orphans["unknown_workspace"])
	require.Len(t, e.CP.Live(""), 1, "a dry run must terminate nothing")
}

func TestEnqueueSweep_WithoutWaitPrintsTheJob(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{NoStart: true})
	var out bytes.Buffer
	cli := app.CLI{Out: &out, Err: &bytes.Buffer{}, Getenv: func(k string) string {
		if k == "DATABASE_URL" {
			return e.DBURL
		}
		return ""
	}}
	require.NoError(t, app.RunEnqueue(context.Background(), cli, []string{"sweep"}))
	var printed struct {
		JobID   int64  `json:"job_id"`
		JobKind string `json:"job_kind"`
	}
	require.NoError(t, json.Unmarshal(out.Bytes(), &printed))
	require.Equal(t, jobs.KindOrphanSweep, printed.JobKind)
	require.NotZero(t, printed.JobID)
}
