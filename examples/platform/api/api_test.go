package api_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/jobs"

	"example.com/platform/api"
	"example.com/platform/hostdb"
	"example.com/platform/internal/pgtest"
	"example.com/platform/secrets"
)

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.Cleanup()
	os.Exit(code)
}

// These tests need no running worker: they check what each handler
// commits (the host's rows and the worker's request) in one transaction.
type env struct {
	t    *testing.T
	db   *sql.DB
	box  *secrets.Box
	srv  *httptest.Server
	logs *bytes.Buffer
}

func newEnv(t *testing.T) *env {
	url := pgtest.NewDB(t)
	pgtest.MigrateWorker(t, url)
	db := pgtest.Open(t, url)
	_, err := hostdb.Migrate(context.Background(), db)
	require.NoError(t, err)
	client, err := jobs.NewInsertClientSQL(db, jobs.Settings{})
	require.NoError(t, err)
	box, err := secrets.NewBox(secrets.NewKey())
	require.NoError(t, err)
	logs := &bytes.Buffer{}
	mux := http.NewServeMux()
	(&api.API{DB: db, Client: client, Box: box, Log: slog.New(slog.NewJSONHandler(logs, nil))}).Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &env{t: t, db: db, box: box, srv: srv, logs: logs}
}

func (e *env) do(method, path, body string) (int, string) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	require.NoError(e.t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(e.t, err)
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	require.NoError(e.t, err)
	return resp.StatusCode, string(b)
}

func (e *env) create(id, parent string, secretValues map[string]string) hostdb.Workspace {
	e.t.Helper()
	body, err := json.Marshal(api.CreateRequest{ID: id, Name: "ws", Runtime: "python", ParentID: parent, Secrets: secretValues})
	require.NoError(e.t, err)
	code, out := e.do("POST", "/workspaces", string(body))
	require.Equal(e.t, http.StatusCreated, code, out)
	var ws hostdb.Workspace
	require.NoError(e.t, json.Unmarshal([]byte(out), &ws))
	return ws
}

func (e *env) worker(id string) jobs.Workspace {
	e.t.Helper()
	ws, err := jobs.GetWorkspace(context.Background(), jobs.SQLDB(e.db), "", id)
	require.NoError(e.t, err)
	return ws
}

func (e *env) count(query string, args ...any) int {
	e.t.Helper()
	var n int
	require.NoError(e.t, e.db.QueryRow(query, args...).Scan(&n))
	return n
}

const (
	root  = "00000000-0000-4000-8000-000000000001"
	child = "00000000-0000-4000-8000-000000000002"
	grand = "00000000-0000-4000-8000-000000000003"
)

// Create commits the row, its secrets (encrypted) and the provision
// request together; the worker stores no env value (its hook asks the
// host at call time).
func TestCreate_RowSecretsAndRequestInOneTransaction(t *testing.T) {
	e := newEnv(t)
	ws := e.create(root, "", map[string]string{"API_KEY": "sk-live-hunter2"})
	require.Equal(t, "provisioning", ws.Status)

	w := e.worker(root)
	require.Equal(t, jobs.StatusProvisioning, w.Status)
	require.Equal(t, 1, e.count(`SELECT count(*) FROM provisioner.river_job WHERE kind = 'workspace_provision' AND args->>'workspace_id' = $1`, root))
	require.Equal(t, 0, e.count(`SELECT count(*) FROM provisioner.workspace_env WHERE env <> '{}'::jsonb`), "no env value in the worker's tables")
	require.Equal(t, 0, e.count(`SELECT count(*) FROM provisioner.river_job WHERE args::text LIKE '%hunter2%'`))

	sealed, err := hostdb.Secrets(context.Background(), e.db, root)
	require.NoError(t, err)
	require.Len(t, sealed, 1)
	require.NotContains(t, string(sealed[0].Value), "hunter2", "encrypted at rest")
	v, err := e.box.Open(root, "API_KEY", sealed[0].Value, sealed[0].Version)
	require.NoError(t, err)
	require.Equal(t, "sk-live-hunter2", v)
}

// Bad input answers a clear 4xx and writes nothing, and the answer never
// echoes a secret value.
func TestCreate_BadInputIs4xxAndWritesNothing(t *testing.T) {
	e := newEnv(t)
	e.create(root, "", nil)
	_, err := e.db.Exec(`UPDATE public.workspaces SET status = 'removed' WHERE id = $1`, root)
	require.NoError(t, err)
	const secret = "sk-live-hunter2"
	cases := []struct {
		name, body string
		code       int
	}{
		{"not json", `{"name": "x", "secrets": {"K": "` + secret, 400},
		{"unknown field", `{"name":"x","runtime":"python","secretz":{"K":"` + secret + `"}}`, 400},
		{"two objects", `{"name":"x","runtime":"python"}{}`, 400},
		{"no name", `{"runtime":"python"}`, 400},
		{"no runtime", `{"name":"x"}`, 400},
		{"bad id", `{"id":"nope","name":"x","runtime":"python"}`, 400},
		{"bad parent", `{"name":"x","runtime":"python","parent_id":"nope"}`, 400},
		{"bad secret key", `{"name":"x","runtime":"python","secrets":{"bad key":"` + secret + `"}}`, 400},
		{"runtime the worker refuses", `{"name":"x","runtime":"py thon","secrets":{"K":"` + secret + `"}}`, 400},
		{"tier the worker refuses", `{"name":"x","runtime":"python","tier":9,"secrets":{"K":"` + secret + `"}}`, 400},
		{"missing parent", `{"name":"x","runtime":"python","parent_id":"` + child + `"}`, 404},
		{"removed parent", `{"name":"x","runtime":"python","parent_id":"` + root + `"}`, 409},
		{"duplicate id", `{"id":"` + root + `","name":"x","runtime":"python"}`, 409},
		{"huge body", `{"name":"` + strings.Repeat("x", 2<<20) + `"}`, 413},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out := e.do("POST", "/workspaces", tc.body)
			require.Equal(t, tc.code, code, out)
			require.Contains(t, out, `"error"`)
			require.NotContains(t, out, secret)
		})
	}
	require.Equal(t, 1, e.count(`SELECT count(*) FROM public.workspaces`), "only the first row")
	require.Equal(t, 0, e.count(`SELECT count(*) FROM public.workspace_secrets`))
	require.Equal(t, 1, e.count(`SELECT count(*) FROM provisioner.workspaces`))
	require.NotContains(t, e.logs.String(), secret)
}

// Delete takes the whole subtree in one transaction: every host row
// removed, a terminate requested for each; a repeat is a no-op.
func TestDelete_SubtreeRemovedAndStoppedTogether(t *testing.T) {
	e := newEnv(t)
	e.create(root, "", nil)
	e.create(child, root, nil)
	e.create(grand, child, nil)
	const other = "00000000-0000-4000-8000-000000000009"
	e.create(other, "", nil)

	code, out := e.do("DELETE", "/workspaces/"+root, "")
	require.Equal(t, http.StatusAccepted, code, out)
	var resp api.DeleteResponse
	require.NoError(t, json.Unmarshal([]byte(out), &resp))
	require.Equal(t, []string{root, child, grand}, resp.Removed)
	for _, id := range resp.Removed {
		ws, err := hostdb.Get(context.Background(), e.db, id)
		require.NoError(t, err)
		require.Equal(t, "removed", ws.Status)
		require.Equal(t, jobs.DesiredDeleted, e.worker(id).Desired)
	}
	require.Equal(t, jobs.DesiredRunning, e.worker(other).Desired)

	code, out = e.do("DELETE", "/workspaces/"+root, "")
	require.Equal(t, http.StatusAccepted, code, out)
	require.JSONEq(t, `{"removed":[]}`, out)
}

func TestDelete_And_Restart_AnswerClearly(t *testing.T) {
	e := newEnv(t)
	e.create(root, "", nil)
	cases := []struct {
		name, method, path string
		code               int
	}{
		{"delete bad id", "DELETE", "/workspaces/nope", 400},
		{"delete unknown", "DELETE", "/workspaces/" + child, 404},
		{"restart bad id", "POST", "/workspaces/nope/restart", 400},
		{"restart unknown", "POST", "/workspaces/" + child + "/restart", 404},
		{"get bad id", "GET", "/workspaces/nope", 400},
		{"get unknown", "GET", "/workspaces/" + child, 404},
		{"get", "GET", "/workspaces/" + root, 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out := e.do(tc.method, tc.path, "")
			require.Equal(t, tc.code, code, out)
		})
	}
}

// Restart puts the host row back to provisioning and asks the worker for
// a stop followed by a fresh generation, together; a removed workspace
// cannot be restarted.
func TestRestart_RequestsAStopThenRunning(t *testing.T) {
	e := newEnv(t)
	e.create(root, "", nil)
	_, err := e.db.Exec(`UPDATE public.workspaces SET status = 'failed', last_sample_error = 'provisioning failed' WHERE id = $1`, root)
	require.NoError(t, err)
	code, out := e.do("POST", "/workspaces/"+root+"/restart", "")
	require.Equal(t, http.StatusAccepted, code, out)
	ws, err := hostdb.Get(context.Background(), e.db, root)
	require.NoError(t, err)
	require.Equal(t, "provisioning", ws.Status)
	require.Empty(t, ws.LastSampleError)
	require.Equal(t, jobs.DesiredRunning, e.worker(root).Desired)
	require.Equal(t, 1, e.count(`SELECT count(*) FROM provisioner.river_job WHERE kind = 'workspace_terminate'`))

	code, _ = e.do("DELETE", "/workspaces/"+root, "")
	require.Equal(t, http.StatusAccepted, code)
	code, out = e.do("POST", "/workspaces/"+root+"/restart", "")
	require.Equal(t, http.StatusConflict, code, out)
}
