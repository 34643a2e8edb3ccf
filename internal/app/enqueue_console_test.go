package app_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/app"
	"github.com/molecule-ai/provision-worker/internal/cp/cpfake"
	"github.com/molecule-ai/provision-worker/internal/jobtest"
	"github.com/molecule-ai/provision-worker/jobs"
)

// userData stands for a secret a boot log can carry (the workspace's env
// written out by cloud-init); the console must show it and keep it.
const userData = "API_KEY=userdata-SECRET-2718"

// consoleVars are the CP settings of env's fake, as an operator exports them.
func consoleVars(env *jobtest.Env) map[string]string {
	return map[string]string{"MOLECULE_ORG_ID": jobtest.OrgID, "CP_PROVISION_URL": env.CP.URL,
		"MOLECULE_CP_SHARED_SECRET": jobtest.SharedSecret, "ADMIN_TOKEN": jobtest.AdminToken,
		"CP_ADMIN_API_TOKEN": jobtest.AdminAPIKey}
}

// stored is everything the CLI could write: every table's text.
func stored(t *testing.T, env *jobtest.Env) string {
	t.Helper()
	var s string
	require.NoError(t, env.Pool.QueryRow(context.Background(), `SELECT
		coalesce((SELECT string_agg(w::text, ',') FROM workspaces w), '') ||
		coalesce((SELECT string_agg(e::text, ',') FROM workspace_events e), '') ||
		coalesce((SELECT string_agg(v::text, ',') FROM workspace_env v), '') ||
		coalesce((SELECT string_agg(j::text, ',') FROM river_job j), '')`).Scan(&s))
	return s
}

func TestConsole_PrintsTheConsoleThroughTheAdminRouteAndStoresNothing(t *testing.T) {
	t.Parallel()
	env := jobtest.New(t, jobtest.Config{NoStart: true})
	id := uuid.NewString()
	env.Provision(jobs.ProvisionRequest{WorkspaceID: id})
	env.CP.SetConsole(id, "[    0.000000] Linux version 6.1\r\ncloud-init: "+userData+"\n\tdone")
	before := stored(t, env)

	out, errOut, err := biRun(t, env, consoleVars(env), "console", "--workspace-id", strings.ToUpper(id))

	require.NoError(t, err)
	require.Equal(t, "[    0.000000] Linux version 6.1\ncloud-init: "+userData+"\n\tdone\n", out)
	require.Empty(t, errOut)
	var console []cpfake.Request
	for _, r := range env.CP.Requests() {
		if r.Route == cpfake.RouteConsole {
			console = append(console, r)
		}
	}
	require.Len(t, console, 1, "one call, on the admin route")
	require.Equal(t, "/cp/admin/workspaces/"+id+"/console", console[0].Path)
	require.Equal(t, "Bearer "+jobtest.AdminAPIKey, console[0].Header.Get("Authorization"), "the admin key, not the shared secret")
	require.Equal(t, before, stored(t, env), "the console is stored nowhere, the timeline included")
	require.NotContains(t, stored(t, env), "userdata-SECRET")
	require.NotContains(t, env.Logs.String(), "userdata-SECRET")
}

// A boot log is written by the instance: escape sequences in it must not
// reach the operator's terminal as such.
func TestConsole_ReplacesTerminalControlRunes(t *testing.T) {
	t.Parallel()
	env := jobtest.New(t, jobtest.Config{NoStart: true})
	id := uuid.NewString()
	env.Provision(jobs.ProvisionRequest{WorkspaceID: id})
	env.CP.SetConsole(id, "a\x1b]0;owned\x07b\u202ec\x9b2Jd\re")

	out, _, err := biRun(t, env, consoleVars(env), "console", "--workspace-id", id)

	require.NoError(t, err)
	require.Equal(t, "a\uFFFD]0;owned\uFFFDb\uFFFDc\uFFFD2Jd\uFFFDe\n", out)
}

func TestConsole_BadInputExits2AndCallsNoCP(t *testing.T) {
	t.Parallel()
	env := jobtest.New(t, jobtest.Config{NoStart: true})
	known := uuid.NewString()
	env.Provision(jobs.ProvisionRequest{WorkspaceID: known})
	without := func(k string) map[string]string {
		v := consoleVars(env)
		v[k] = ""
		return v
	}
	withVar := func(k, val string) map[string]string {
		v := consoleVars(env)
		v[k] = val
		return v
	}
	for _, tc := range []biCase{
		{"no workspace id", consoleVars(env), []string{"console"}, "--workspace-id: want a UUID"},
		{"invalid uuid", consoleVars(env), []string{"console", "--workspace-id", "ws-1"}, `want a UUID, got "ws-1"`},
		{"unknown workspace", consoleVars(env), []string{"console", "--workspace-id", uuid.NewString()}, "unknown workspace"},
		{"positional secret", consoleVars(env), []string{"console", "--workspace-id", known, "API_KEY=" + biSecret}, "not repeated"},
		{"unknown flag", consoleVars(env), []string{"console", "--workspace", known}, "flag provided but not defined: -workspace"},
		{"no org id", without("MOLECULE_ORG_ID"), []string{"console", "--workspace-id", known}, "MOLECULE_ORG_ID is required"},
		{"no DATABASE_URL", withVar("DATABASE_URL", ""), []string{"console", "--workspace-id", known}, "DATABASE_URL is required"},
		{"CP URL with credentials", withVar("CP_PROVISION_URL", "https://u:"+biSecret+"@cp.example"), []string{"console", "--workspace-id", known}, "CP_PROVISION_URL"},
		{"CP timeout malformed", withVar("CP_TIMEOUT", "soon"), []string{"console", "--workspace-id", known}, "CP_TIMEOUT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			consoles := env.CP.Stats().Consoles

			out, _, err := biRun(t, env, tc.vars, tc.args...)

			require.Error(t, err)
			require.True(t, app.IsBadInput(err), "want exit 2, got: %v", err)
			require.Contains(t, err.Error(), tc.msg)
			require.NotContains(t, err.Error(), biSecret)
			require.NotContains(t, err.Error(), "\n")
			require.Empty(t, out)
			require.Equal(t, consoles, env.CP.Stats().Consoles, "bad input reached the CP")
		})
	}
}

// A failed call is exit 1, and its message carries neither the CP's body
// (an admin route's error page may echo the request's credentials, or the
// console) nor a credential.
func TestConsole_CPFailureExits1WithoutTheCPBodyOrCredentials(t *testing.T) {
	t.Parallel()
	env := jobtest.New(t, jobtest.Config{NoStart: true})
	id := uuid.NewString()
	env.Provision(jobs.ProvisionRequest{WorkspaceID: id})
	echo := func(status int, body string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(status)
			_, _ = w.Write([]byte(strings.ReplaceAll(body, "$AUTH", r.Header.Get("Authorization"))))
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	for _, tc := range []struct {
		name, url, msg string
	}{
		{"5xx echoing the credentials", echo(502, `{"error":"upstream said $AUTH `+userData+`"}`), "status 502"},
		{"refused credentials", echo(403, `{"error":"bad key $AUTH"}`), "check CP_ADMIN_API_TOKEN"},
		{"no console", echo(404, `{"error":"no instance `+userData+`"}`), "status 404"},
		{"2xx not JSON", echo(200, `<html>$AUTH `+userData+`</html>`), "could not be read"},
		{"no answer", closed.URL, "no answer from the CP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vars := consoleVars(env)
			vars["CP_PROVISION_URL"] = tc.url

			out, errOut, err := biRun(t, env, vars, "console", "--workspace-id", id)

			require.Error(t, err)
			require.False(t, app.IsBadInput(err), "a CP failure is exit 1: %v", err)
			require.Contains(t, err.Error(), tc.msg)
			for _, secret := range []string{jobtest.AdminAPIKey, jobtest.AdminToken, jobtest.SharedSecret, "userdata-SECRET", "upstream said", "html"} {
				require.NotContains(t, err.Error(), secret)
			}
			require.NotContains(t, err.Error(), "\n")
			require.Empty(t, out)
			require.Empty(t, errOut)
		})
	}
}

// The built binary: the console on stdout and nothing on stderr; exit 2 on
// bad input and exit 1 on a CP failure, with one line on stderr.
func TestConsoleProcess_StdoutOnlyAndExitCodes(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds cmd/enqueue")
	}
	env := jobtest.New(t, jobtest.Config{NoStart: true})
	id := uuid.NewString()
	env.Provision(jobs.ProvisionRequest{WorkspaceID: id})
	env.CP.SetConsole(id, "boot ok "+userData)
	bin := buildEnqueue(t)
	run := func(vars map[string]string, args ...string) (string, string, int) {
		cmd := exec.Command(bin, args...)
		cmd.Env = []string{"DATABASE_URL=" + env.DBURL, "PATH=" + os.Getenv("PATH")}
		for k, v := range vars {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return stdout.String(), stderr.String(), exit.ExitCode()
		}
		require.NoError(t, err)
		return stdout.String(), stderr.String(), 0
	}

	out, errOut, code := run(consoleVars(env), "console", "--workspace-id", id)
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "boot ok "+userData+"\n", out)
	require.Empty(t, errOut)

	out, errOut, code = run(consoleVars(env), "console", "--workspace-id", uuid.NewString())
	require.Equal(t, 2, code)
	require.Empty(t, out)
	require.Regexp(t, `^enqueue: unknown workspace [0-9a-f-]{36}\n$`, errOut)

	env.CP.FailNext(cpfake.RouteConsole, 500, 1)
	out, errOut, code = run(consoleVars(env), "console", "--workspace-id", id)
	require.Equal(t, 1, code)
	require.Empty(t, out)
	require.Equal(t, "enqueue: console: the CP answered status 500 (its message is not repeated here)\n", errOut)
}
