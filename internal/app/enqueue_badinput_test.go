package app_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/app"
	"github.com/molecule-ai/provision-worker/internal/jobtest"
	"github.com/molecule-ai/provision-worker/jobs"
)

// Every bad input to the enqueue CLI must mean exit 2 with a message that
// names what is wrong, and must write nothing: scripts retry on exit 1
// and give up on 2, so a typo that half-applied, or a bad value reported
// as a database failure, would be repeated or hidden.

// biSecret stands for a secret passed through --env; no error may echo it.
const biSecret = "envSECRET-3141"

// biCounts is every table the CLI writes, plus River's job states.
func biCounts(t *testing.T, env *jobtest.Env) string {
	t.Helper()
	var s string
	require.NoError(t, env.Pool.QueryRow(context.Background(), `SELECT
		(SELECT count(*) FROM workspaces)::text || '/' || (SELECT count(*) FROM workspace_env)::text || '/' ||
		(SELECT count(*) FROM workspace_events)::text || '/' ||
		coalesce((SELECT string_agg(id::text || state::text || attempt::text, ',' ORDER BY id) FROM river_job), '')`).Scan(&s))
	return s
}

// biRun runs the CLI in-process with env vars on top of DATABASE_URL.
func biRun(t *testing.T, env *jobtest.Env, vars map[string]string, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	getenv := func(k string) string {
		if v, ok := vars[k]; ok {
			return v
		}
		if k == "DATABASE_URL" {
			return env.DBURL
		}
		return ""
	}
	lookup := func(k string) (string, bool) {
		v, ok := vars[k]
		return v, ok || getenv(k) != ""
	}
	err := app.RunEnqueue(context.Background(), app.CLI{Out: &out, Err: &errOut, Getenv: getenv, LookupEnv: lookup}, args)
	return out.String(), errOut.String(), err
}

type biCase struct {
	name string
	vars map[string]string
	args []string
	msg  string // the error names the input and the expected form
}

func biCases(known string) []biCase {
	ws := uuid.NewString()
	return []biCase{
		{"no subcommand", nil, nil, "a subcommand is required"},
		{"unknown subcommand", nil, []string{"provison"}, "unknown subcommand"},
		{"secret in place of a subcommand", nil, []string{"API_KEY=" + biSecret}, "unknown subcommand, not repeated"},
		{"provision without workspace id", nil, []string{"provision"}, "workspace id must be a UUID"},
		{"provision invalid uuid", nil, []string{"provision", "--workspace-id", "ws-1"}, `workspace id must be a UUID, got "ws-1"`},
		{"provision uuid with a quote", nil, []string{"provision", "--workspace-id", ws + "'"}, "workspace id must be a UUID"},
		{"provision flag without value", nil, []string{"provision", "--workspace-id"}, "flag needs an argument: -workspace-id"},
		{"provision unknown flag", nil, []string{"provision", "--workspace-id", ws, "--teir", "2"}, "flag provided but not defined: -teir"},
		{"provision positional argument", nil, []string{"provision", "--workspace-id", ws, "extra"}, "unexpected positional argument"},
		{"provision positional secret", nil, []string{"provision", "--workspace-id", ws, "API_KEY=" + biSecret}, "not repeated"},
		{"database url as a flag", nil, []string{"provision", "--workspace-id", ws, "--database-url", "postgres://u:" + biSecret + "@h/db"}, "not defined: -database-url"},
		{"tier above range", nil, []string{"provision", "--workspace-id", ws, "--tier", "5"}, "want an integer from 0 to 4"},
		{"tier below range", nil, []string{"provision", "--workspace-id", ws, "--tier", "-1"}, "want an integer from 0 to 4"},
		{"tier not a number", nil, []string{"provision", "--workspace-id", ws, "--tier", "two"}, "want an integer from 0 to 4"},
		{"env without key", nil, []string{"provision", "--workspace-id", ws, "--env", "=" + biSecret}, "--env: want K=V or K"},
		{"env key twice", nil, []string{"provision", "--workspace-id", ws, "--env", "K=" + biSecret, "--env", "K=x"}, "--env: K given twice"},
		{"env key malformed", nil, []string{"provision", "--workspace-id", ws, "--env", "BAD-KEY=" + biSecret}, `env key "BAD-KEY"`},
		{"env name unset", nil, []string{"provision", "--workspace-id", ws, "--env", "MYSECRET_TYPO"}, "--env: MYSECRET_TYPO is not set"},
		{"env value with NUL", nil, []string{"provision", "--workspace-id", ws, "--env", "K=" + biSecret + "\x00"}, "env K: value must be"},
		{"env value invalid UTF-8", nil, []string{"provision", "--workspace-id", ws, "--env", "K=" + biSecret + "\xff"}, "env K: value must be"},
		{"platform url not http", nil, []string{"provision", "--workspace-id", ws, "--platform-url", "ftp://h/x"}, "platform url must be an absolute http(s) URL"},
		{"platform url relative", nil, []string{"provision", "--workspace-id", ws, "--platform-url", "/cb"}, "platform url must be an absolute http(s) URL"},
		{"runtime with a space", nil, []string{"provision", "--workspace-id", ws, "--runtime", "py thon"}, "runtime must be"},
		{"no DATABASE_URL", map[string]string{"DATABASE_URL": ""}, []string{"provision", "--workspace-id", ws}, "DATABASE_URL is required"},
		{"attempt budget not a number", map[string]string{"PROVISION_MAX_ATTEMPTS": "lots"}, []string{"provision", "--workspace-id", ws}, `PROVISION_MAX_ATTEMPTS: want an integer from 1 to 100000, got "lots"`},
		{"attempt budget zero", map[string]string{"TERMINATE_MAX_ATTEMPTS": "0"}, []string{"terminate", "--workspace-id", known}, "TERMINATE_MAX_ATTEMPTS: want an integer from 1 to 100000"},
		{"terminate unknown workspace", nil, []string{"terminate", "--workspace-id", ws}, "unknown workspace " + ws},
		{"terminate invalid uuid", nil, []string{"terminate", "--workspace-id", "'; DROP TABLE workspaces; --"}, "workspace id must be a UUID"},
		{"terminate delete not a bool", nil, []string{"terminate", "--workspace-id", known, "--delete=maybe"}, "want true or false"},
		{"restart unknown workspace", nil, []string{"restart", "--workspace-id", ws}, "unknown workspace"},
		{"retry unknown job", nil, []string{"retry", "--job-id", "987654321"}, "job 987654321 not found"},
		{"retry known and unknown job", nil, []string{"retry", "--job-id", "1", "--job-id", "987654321"}, "job 987654321 not found"},
		{"retry job id not a number", nil, []string{"retry", "--job-id", "x"}, "-job-id"},
		{"timeline unknown workspace", nil, []string{"timeline", "--workspace-id", ws}, "unknown workspace"},
		{"timeline invalid uuid", nil, []string{"timeline", "--workspace-id", "nope"}, "UUID"},
		{"sweep unknown flag", nil, []string{"sweep", "--dryrun"}, "flag provided but not defined: -dryrun"},
	}
}

func TestEnqueue_BadInputExits2WithClearMessageAndWritesNothing(t *testing.T) {
	t.Parallel()
	env := jobtest.New(t, jobtest.Config{NoStart: true})
	known := uuid.NewString()
	env.Provision(jobs.ProvisionRequest{WorkspaceID: known})
	for _, tc := range biCases(known) {
		t.Run(tc.name, func(t *testing.T) {
			before := biCounts(t, env)

			out, _, err := biRun(t, env, tc.vars, tc.args...)

			require.Error(t, err)
			require.True(t, app.IsBadInput(err), "want exit 2, got: %v", err)
			require.False(t, app.IsHelp(err))
			require.Contains(t, err.Error(), tc.msg)
			require.NotContains(t, err.Error(), biSecret, "an --env value was echoed")
			require.NotContains(t, err.Error(), "\n", "one line on stderr")
			require.NotContains(t, out, "{", "nothing printed as if done")
			require.Equal(t, before, biCounts(t, env), "bad input wrote something")
		})
	}
}

// TestEnqueue_EnvNameTakesItsValueFromTheEnvironment: --env K reads K, and
// K set to the empty string is a value like any other.
func TestEnqueue_EnvNameTakesItsValueFromTheEnvironment(t *testing.T) {
	t.Parallel()
	env := jobtest.New(t, jobtest.Config{NoStart: true})
	id := uuid.NewString()
	_, _, err := biRun(t, env, map[string]string{"API_KEY": biSecret, "EMPTY": ""},
		"provision", "--workspace-id", id, "--env", "API_KEY", "--env", "EMPTY")
	require.NoError(t, err)
	var got map[string]string
	require.NoError(t, env.Pool.QueryRow(context.Background(),
		`SELECT env FROM workspace_env WHERE workspace_id = $1`, id).Scan(&got))
	require.Equal(t, map[string]string{"API_KEY": biSecret, "EMPTY": ""}, got)
}

// The CLI path of the SQL test: hostile but valid values come back byte
// for byte through the same command scripts use.
func TestEnqueue_HostileValuesReadBackUnchanged(t *testing.T) {
	t.Parallel()
	env := jobtest.New(t, jobtest.Config{NoStart: true})
	id := uuid.NewString()
	vals := map[string]string{
		"Q": `'); DROP TABLE workspaces; --`, "U": "日本語 😀", "E": `\u0000 "x"`, "L": strings.Repeat("ü", 16<<10),
	}
	args := []string{"provision", "--workspace-id", id, "--platform-url", "https://h.example/p?q=%27x%27&r=%22y%22"}
	for k, v := range vals {
		args = append(args, "--env", k+"="+v)
	}

	_, _, err := biRun(t, env, nil, args...)
	require.NoError(t, err)

	var got map[string]string
	require.NoError(t, env.Pool.QueryRow(context.Background(),
		`SELECT env FROM workspace_env WHERE workspace_id = $1`, id).Scan(&got))
	require.Equal(t, vals, got)
	require.Equal(t, "https://h.example/p?q=%27x%27&r=%22y%22", env.Workspace(id).PlatformURL)
}

// buildEnqueue compiles cmd/enqueue once per test binary run.
func buildEnqueue(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "enqueue")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/molecule-ai/provision-worker/cmd/enqueue")
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Run())
	return bin
}

func TestEnqueueProcess_BadInputExitCode2AndOneStderrLine(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds cmd/enqueue")
	}
	env := jobtest.New(t, jobtest.Config{NoStart: true})
	bin := buildEnqueue(t)
	cases := []struct {
		name  string
		dbURL string
		args  []string
		msg   string
	}{
		{"invalid uuid", env.DBURL, []string{"provision", "--workspace-id", "nope"}, "workspace id must be a UUID"},
		{"unknown flag", env.DBURL, []string{"provision", "--bogus"}, "flag provided but not defined: -bogus"},
		{"tier out of range", env.DBURL, []string{"provision", "--workspace-id", uuid.NewString(), "--tier", "9"}, "want an integer from 0 to 4"},
		{"unknown workspace", env.DBURL, []string{"terminate", "--workspace-id", uuid.NewString()}, "unknown workspace"},
		{"no DATABASE_URL", "", []string{"provision", "--workspace-id", uuid.NewString()}, "DATABASE_URL is required"},
		{"env name unset", env.DBURL, []string{"provision", "--workspace-id", uuid.NewString(), "--env", "SURELY_UNSET_NAME_8121"}, "SURELY_UNSET_NAME_8121 is not set"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := biCounts(t, env)
			cmd := exec.Command(bin, tc.args...)
			cmd.Env = []string{"DATABASE_URL=" + tc.dbURL, "PATH=" + os.Getenv("PATH")}
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr

			err := cmd.Run()

			var exit *exec.ExitError
			require.True(t, errors.As(err, &exit), "want an exit error, got %v", err)
			require.Equal(t, 2, exit.ExitCode(), "stderr: %s", stderr.String())
			lines := strings.Split(strings.TrimRight(stderr.String(), "\n"), "\n")
			require.Len(t, lines, 1, "stderr: %q", stderr.String())
			require.True(t, strings.HasPrefix(lines[0], "enqueue: "), lines[0])
			require.Contains(t, lines[0], tc.msg)
			require.Empty(t, stdout.String())
			require.Equal(t, before, biCounts(t, env))
		})
	}
}

func TestEnqueueProcess_DatabaseDownIsExit1NotBadInput(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds cmd/enqueue")
	}
	bin := buildEnqueue(t)
	cmd := exec.Command(bin, "provision", "--workspace-id", uuid.NewString())
	cmd.Env = []string{"DATABASE_URL=postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=2"}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr

	err := cmd.Run()

	var exit *exec.ExitError
	require.True(t, errors.As(err, &exit))
	require.Equal(t, 1, exit.ExitCode(), "a failure to reach Postgres is worth retrying: not exit 2; stderr %s", stderr.String())
}
