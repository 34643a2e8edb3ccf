package chaos

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/cp/cpfake"
	"github.com/molecule-ai/provision-worker/internal/testdb"
)

// The secrets of TestBinary_CPErrorsNeverCarryEnvValuesOrCredentials.
// The env value holds characters every escaping changes.
const (
	leakEnvValue     = "envSECRET/value+789 ü?&"
	leakSharedSecret = "shared-SECRET-4242"
	leakAdminToken   = "admin-TOKEN-5151"
)

// echoForms are the ways the hostile CP repeats a value in its error
// field, one per provision attempt: raw, URL-escaped (query and path),
// JSON-escaped, and base64 in each alphabet, alone and inside "K=V".
var echoForms = []func(string) string{
	func(v string) string { return "invalid env: MYKEY='" + v + "'" },
	func(v string) string { return "bad query env=" + url.QueryEscape(v) },
	func(v string) string { return "no route /env/" + url.PathEscape(v) },
	func(v string) string { b, _ := json.Marshal(v); return `bad body {"MYKEY":` + string(b) + `}` },
	func(v string) string { return "user-data " + base64.StdEncoding.EncodeToString([]byte(v)) },
	func(v string) string { return "user-data " + base64.URLEncoding.EncodeToString([]byte(v)) },
	func(v string) string { return "user-data " + base64.RawStdEncoding.EncodeToString([]byte(v)) + "!" },
	func(v string) string { return "user-data " + base64.RawURLEncoding.EncodeToString([]byte(v)) + "!" },
	func(v string) string {
		return "user-data " + base64.StdEncoding.EncodeToString([]byte("MYKEY="+v+"\n"))
	},
}

// hostileCP answers every provision with an error field that repeats the
// request's env value, then its credentials, in each echo form: 503s
// (retried, so every attempt's error lands in river_job.errors), then a
// final 422 (the row fails with it in last_error). Everything else goes
// to the fake.
func hostileCP(fake http.Handler) (http.Handler, *atomic.Int32) {
	var n atomic.Int32
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/cp/workspaces/provision" {
			fake.ServeHTTP(w, r)
			return
		}
		var req struct {
			Env map[string]string `json:"env"`
		}
		_ = json.NewDecoder(r.Body).Decode(&req)
		bearer := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		admin := r.Header.Get("X-Molecule-Admin-Token")
		i := int(n.Add(1)) - 1
		var msg string
		status := http.StatusServiceUnavailable
		switch {
		case i < len(echoForms):
			msg = echoForms[i](req.Env["MYKEY"])
		case i < 2*len(echoForms):
			msg = echoForms[i-len(echoForms)](bearer) + " / " + echoForms[i-len(echoForms)](admin)
		default:
			msg, status = echoForms[0](req.Env["MYKEY"]), http.StatusUnprocessableEntity
		}
		b, _ := json.Marshal(map[string]string{"error": msg})
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write(b)
	}), &n
}

// forbidden lists every run of 8 bytes of every form of secret that must
// not appear anywhere: computed here, independently of the client's own
// list (base64 inside a longer text only fixes the characters whose six
// bits all come from the secret, at each of three alignments).
func forbidden(secret string) []string {
	jsonEsc, _ := json.Marshal(secret)
	forms := []string{secret, url.QueryEscape(secret), url.PathEscape(secret), string(jsonEsc[1 : len(jsonEsc)-1])}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		for shift := range 3 {
			s := enc.EncodeToString([]byte(strings.Repeat("A", shift) + secret))
			forms = append(forms, s[(8*shift+5)/6:8*(shift+len(secret))/6])
		}
	}
	var runs []string
	for _, f := range forms {
		for i := 0; i+8 <= len(f); i++ {
			runs = append(runs, f[i:i+8])
		}
	}
	return runs
}

// A CP that repeats a provision's env value (or the worker's CP
// credentials) in its error field, raw or encoded, must not get it into
// the worker's log, workspaces.last_error, river_job.errors (River UI
// shows them), the timeline table or `enqueue timeline` (text or JSON).
// Real binaries, a real HTTP CP, a real database.
func TestBinary_CPErrorsNeverCarryEnvValuesOrCredentials(t *testing.T) {
	w := &world{t: t, logDir: t.TempDir(), env: map[string]string{
		"MOLECULE_CP_SHARED_SECRET": leakSharedSecret, "ADMIN_TOKEN": leakAdminToken}}
	w.worker, w.enqueue, w.host = binaries(t)
	w.pool, w.dbURL = testdb.NewPool(t)
	fake := cpfake.Start(cpfake.Options{OrgID: orgID, SharedSecret: leakSharedSecret, AdminToken: leakAdminToken})
	t.Cleanup(fake.Close)
	front, provisions := hostileCP(fake.Handler())
	hs := httptest.NewServer(front)
	t.Cleanup(hs.Close)
	w.cp = &cpfake.Server{Fake: fake.Fake, URL: hs.URL}
	t.Cleanup(w.stopAll)
	p := w.startWorker("w1")

	id := uuid.NewString()
	out, code := runEnqueueEnv(t, w, []string{"MYKEY=" + leakEnvValue},
		"provision", "--workspace-id", id, "--env", "MYKEY")
	require.Equal(t, 0, code, out)
	_, err := w.drainWhere(fmt.Sprintf(`SELECT count(*) FROM workspaces WHERE id = '%s' AND status <> 'failed'`, id), time.Minute)
	require.NoError(t, err, "the 422 marks the row failed")
	require.EqualValues(t, 2*len(echoForms)+1, provisions.Load())
	require.Eventually(t, func() bool { return logHas(p, "provision.failed", id) }, 10*time.Second, 50*time.Millisecond)

	places := map[string]string{"worker log": readFile(t, p.log)}
	places["last_error"] = queryText(t, w, `SELECT last_error FROM workspaces WHERE id = $1`, id)
	places["river_job.errors"] = queryText(t, w, `SELECT string_agg(errors::text, ' ') FROM river_job WHERE args->>'workspace_id' = $1`, id)
	places["workspace_events"] = queryText(t, w, `SELECT string_agg(fields::text, ' ') FROM workspace_events WHERE workspace_id = $1`, id)
	places["enqueue timeline"], _ = runEnqueueEnv(t, w, nil, "timeline", "--workspace-id", id)
	places["enqueue timeline --json"], _ = runEnqueueEnv(t, w, nil, "timeline", "--workspace-id", id, "--json")

	for _, secret := range []string{leakEnvValue, leakSharedSecret, leakAdminToken} {
		runs := forbidden(secret)
		for where, text := range places {
			for _, run := range runs {
				require.False(t, strings.Contains(text, run), "%s holds %q, part of a form of %q", where, run, secret)
			}
		}
	}
	require.Contains(t, places["last_error"], "MYKEY='[redacted]'", "the CP's message itself still gets through")
	require.GreaterOrEqual(t, strings.Count(places["river_job.errors"], "[redacted]"), 2*len(echoForms))
}

// runEnqueueEnv runs the enqueue binary with extra env (a secret passed
// by name, as `--env K` reads it, stays out of argv) and returns its
// stdout (stderr on failure) and exit code.
func runEnqueueEnv(t *testing.T, w *world, env []string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, w.enqueue, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "DATABASE_URL=" + w.dbURL}, env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return errb.String(), ee.ExitCode()
	}
	require.NoError(t, err)
	return out.String(), 0
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	b, err := io.ReadAll(f)
	require.NoError(t, err)
	return string(b)
}

func queryText(t *testing.T, w *world, sql string, args ...any) string {
	t.Helper()
	var s *string
	require.NoError(t, w.pool.QueryRow(context.Background(), sql, args...).Scan(&s))
	require.NotNil(t, s, sql)
	return *s
}
