package worker_test

import (
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/cp"
	"github.com/molecule-ai/provision-worker/internal/jobtest"
	"github.com/molecule-ai/provision-worker/internal/testdb"
	"github.com/molecule-ai/provision-worker/internal/worker"
	"github.com/molecule-ai/provision-worker/jobs"
)

// NewWorkerClient leaves the caller's Deps as it was: it used to set its
// Pool, fill its Settings and wrap its CP in the list guard, so a Deps
// built once and handed to two clients (or read afterwards) was not what
// its caller wrote. PrepareDeps does the filling on a copy, and preparing
// a prepared Deps changes nothing (jobtest holds one).
func TestNewWorkerClient_LeavesTheCallersDepsAsItWas(t *testing.T) {
	pool, _ := testdb.NewPool(t)
	api, err := cp.New(cp.Config{BaseURL: "http://127.0.0.1:1", OrgID: jobtest.OrgID, Timeout: time.Second})
	require.NoError(t, err)
	deps := &worker.Deps{CP: api, Log: zerolog.Nop(), Settings: jobs.Settings{ProvisionTimeout: time.Minute}}
	before := *deps

	_, err = worker.NewWorkerClient(pool, deps, jobs.Options{})
	require.NoError(t, err)
	require.Equal(t, before, *deps, "NewWorkerClient changed the caller's Deps")
	require.Same(t, api, deps.CP.(*cp.Client), "the caller's CP was replaced")

	prepared, err := worker.PrepareDeps(pool, *deps)
	require.NoError(t, err)
	require.Equal(t, before, *deps, "PrepareDeps changed its argument's source")
	require.Same(t, pool, prepared.Pool)
	require.Equal(t, jobs.Settings{ProvisionTimeout: time.Minute}.Or(jobs.DefaultSettings()), prepared.Settings)
	again, err := worker.PrepareDeps(pool, *prepared)
	require.NoError(t, err)
	require.Equal(t, *prepared, *again, "preparing a prepared Deps changed it")
}
