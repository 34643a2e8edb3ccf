package worker_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/cp"
	"github.com/molecule-ai/provision-worker/internal/jobtest"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/internal/testdb"
	"github.com/molecule-ai/provision-worker/internal/worker"
	"github.com/molecule-ai/provision-worker/jobs"
)

// rule9CP answers every provision with a 201 naming instanceID, and logs
// the method and path of every request it gets.
type rule9CP struct {
	instanceID string
	mu         sync.Mutex
	paths      []string
}

func (h *rule9CP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.paths = append(h.paths, r.Method+" "+r.URL.EscapedPath())
	h.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if r.Method == http.MethodPost && r.URL.Path == "/cp/workspaces/provision" {
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(map[string]string{"instance_id": h.instanceID, "state": "running"})
		return
	}
	w.WriteHeader(http.StatusNotFound)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": "no such route"})
}

func (h *rule9CP) seen() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.paths...)
}

// rule9World is a worker against a rule9CP, on its own test database.
func rule9World(t *testing.T, h *rule9CP) (*jobs.Client, *jobtest.SafeBuffer, func(string) store.Workspace, func(jobs.ProvisionRequest)) {
	ctx := context.Background()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	api, err := cp.New(cp.Config{BaseURL: srv.URL, OrgID: jobtest.OrgID, Timeout: 2 * time.Second})
	require.NoError(t, err)
	pool, _ := testdb.NewPool(t)
	logs := &jobtest.SafeBuffer{}
	deps := &worker.Deps{CP: api, Log: zerolog.New(logs), Settings: jobtest.FastSettings()}
	worker, err := worker.NewWorkerClient(pool, deps, jobs.Options{FetchCooldown: 5 * time.Millisecond, FetchPollInterval: 20 * time.Millisecond})
	require.NoError(t, err)
	insert, err := jobs.NewInsertClient(pool, jobtest.FastSettings())
	require.NoError(t, err)
	require.NoError(t, worker.Start(ctx))
	t.Cleanup(func() { _ = worker.StopAndCancel(context.Background()) })
	get := func(id string) store.Workspace {
		ws, err := store.MustFor("").Get(ctx, pool, id)
		require.NoError(t, err)
		return ws
	}
	provision := func(req jobs.ProvisionRequest) {
		require.NoError(t, pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			_, err := jobs.RequestProvision(ctx, tx, insert, req)
			return err
		}))
	}
	return worker, logs, get, provision
}

// Rule 9: an instance id from the CP is validated before it can enter a
// URL; a hostile one fails the provision and steers no request anywhere.
func TestProvision_HostileInstanceIDFailsWithoutSteeringRequests(t *testing.T) {
	t.Parallel()
	for _, hostile := range []string{"i-1/../../admin", "i-1?x=", "i-0123456789abcdef0/../../cp/admin/x", "i-deadbeef#frag"} {
		t.Run(hostile, func(t *testing.T) {
			t.Parallel()
			h := &rule9CP{instanceID: hostile}
			_, logs, get, provision := rule9World(t, h)
			id := uuid.NewString()
			provision(jobs.ProvisionRequest{WorkspaceID: id})

			require.Eventually(t, func() bool { return get(id).Status == store.StatusFailed },
				30*time.Second, 20*time.Millisecond)

			ws := get(id)
			require.Empty(t, ws.InstanceID)
			require.Contains(t, ws.LastError, "invalid instance id")
			require.NotContains(t, ws.LastError, hostile, "the hostile id reached last_error")
			for _, p := range h.seen() {
				require.Contains(t, []string{"POST /cp/workspaces/provision", "GET /cp/workspaces"}, p)
			}
			require.NotContains(t, logs.String(), hostile)
		})
	}
}
