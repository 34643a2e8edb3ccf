package app

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/config"
	"github.com/molecule-ai/provision-worker/internal/cp"
	"github.com/molecule-ai/provision-worker/provisioner"
)

// A worker that starts on a misread setting is worse than one that does
// not start: it runs against the production CP, on a public address, or
// with a job timeout shorter than the CP's. Every bad value must stop it
// with exit 2 and one message naming the variable and the expected form,
// and never repeat a secret.

const (
	wcSecret = "wcSECRET-2718" // every secret variable holds this
	wcPass   = "wcPASS-1618"
)

// wcEnv is a valid environment with vars layered on top ("" unsets).
func wcEnv(vars map[string]string) func(string) string {
	base := map[string]string{
		"DATABASE_URL":              "postgres://u:" + wcSecret + "@127.0.0.1:5432/db",
		"MOLECULE_ORG_ID":           "org-1",
		"MOLECULE_CP_SHARED_SECRET": wcSecret,
		"ADMIN_TOKEN":               wcSecret,
		"CP_ADMIN_API_TOKEN":        wcSecret,
		"RIVER_BASIC_AUTH_USER":     "ops",
		"RIVER_BASIC_AUTH_PASS":     wcPass,
	}
	for k, v := range vars {
		base[k] = v
	}
	return func(k string) string { return base[k] }
}

func TestParseWorker_ValidEnvironmentParses(t *testing.T) {
	t.Parallel()
	c, err := ParseWorker(nil, wcEnv(nil))
	require.NoError(t, err)
	require.Equal(t, "org-1", c.CP.OrgID)
	require.Equal(t, cp.DefaultBaseURL, c.CP.BaseURL)
}

func TestParseWorker_BadValueNamesVariableAndForm(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		vars map[string]string
		args []string
		want []string // all in the message
	}{
		{"missing org id", map[string]string{"MOLECULE_ORG_ID": ""}, nil, []string{"MOLECULE_ORG_ID", "required"}},
		{"missing database url", map[string]string{"DATABASE_URL": ""}, nil, []string{"DATABASE_URL", "required"}},
		{"cp url not a url", map[string]string{"CP_PROVISION_URL": "api.example.com"}, nil, []string{"CP_PROVISION_URL", "absolute http(s) URL"}},
		{"cp url wrong scheme", map[string]string{"MOLECULE_CP_URL": "ftp://api.example.com"}, nil, []string{"MOLECULE_CP_URL", "absolute http(s) URL"}},
		{"cp url unparseable", map[string]string{"CP_PROVISION_URL": "http://[::1"}, nil, []string{"CP_PROVISION_URL", "absolute http(s) URL"}},
		{"cp url with credentials", map[string]string{"CP_PROVISION_URL": "https://u:" + wcSecret + "@api.example.com"}, nil, []string{"CP_PROVISION_URL", "without query or credentials"}},
		{"cp url with a token in its query", map[string]string{"CP_PROVISION_URL": "https://api.example.com/?token=" + wcSecret}, nil, []string{"CP_PROVISION_URL", "without query or credentials"}},
		{"database url malformed", map[string]string{"DATABASE_URL": "postgres://u:" + wcSecret + "@h:notaport/db"}, nil, []string{"DATABASE_URL", "Postgres URL"}},
		{"cp timeout not a duration", map[string]string{"CP_TIMEOUT": "30"}, nil, []string{"CP_TIMEOUT", "positive Go duration"}},
		{"cp timeout negative", map[string]string{"CP_TIMEOUT": "-5s"}, nil, []string{"CP_TIMEOUT", "positive Go duration"}},
		{"duration not a duration", map[string]string{"SHUTDOWN_TIMEOUT": "soon"}, nil, []string{"SHUTDOWN_TIMEOUT", "positive Go duration like 30s", `"soon"`}},
		{"duration zero", map[string]string{"SWEEP_INTERVAL": "0s"}, nil, []string{"SWEEP_INTERVAL", "positive Go duration"}},
		{"number not a number", map[string]string{"PROVISION_WORKERS": "many"}, nil, []string{"PROVISION_WORKERS", "an integer from 1 to 10000"}},
		{"number out of range", map[string]string{"TERMINATE_WORKERS": "0"}, nil, []string{"TERMINATE_WORKERS", "an integer from 1 to 10000"}},
		{"share above one", map[string]string{"SWEEP_BREAKER_SHARE": "1.5"}, nil, []string{"SWEEP_BREAKER_SHARE", "a number from 0 to 1"}},
		{"share NaN", map[string]string{"SWEEP_BREAKER_SHARE": "NaN"}, nil, []string{"SWEEP_BREAKER_SHARE", "a number from 0 to 1"}},
		{"bool not a bool", map[string]string{"SWEEP_ENABLED": "yes please"}, nil, []string{"SWEEP_ENABLED", "true or false"}},
		{"synchronous commit not on or off", map[string]string{"COMPLETION_SYNCHRONOUS_COMMIT": "remote_apply"}, nil, []string{"COMPLETION_SYNCHRONOUS_COMMIT", "on or off"}},
		{"two bad values on one line", map[string]string{"PROVISION_WORKERS": "x", "TERMINATE_WORKERS": "y"}, nil, []string{"PROVISION_WORKERS", "TERMINATE_WORKERS"}},
		{"http addr without port", map[string]string{"WORKER_HTTP_ADDR": "localhost"}, nil, []string{"WORKER_HTTP_ADDR", "host:port"}},
		{"public addr without ui credentials", map[string]string{"WORKER_HTTP_ADDR": "0.0.0.0:8080", "RIVER_BASIC_AUTH_USER": "", "RIVER_BASIC_AUTH_PASS": ""}, nil, []string{"RIVER_BASIC_AUTH_USER", "RIVER_BASIC_AUTH_PASS", "loopback"}},
		{"ui user without password", map[string]string{"RIVER_BASIC_AUTH_PASS": ""}, nil, []string{"RIVER_BASIC_AUTH_USER", "RIVER_BASIC_AUTH_PASS"}},
		{"job timeout below cp timeout", map[string]string{"CP_TIMEOUT": "5m"}, nil, []string{"PROVISION_TIMEOUT", "CP_TIMEOUT"}},
		{"rescue before timeouts", map[string]string{"RESCUE_AFTER": "1m"}, nil, []string{"RESCUE_AFTER", "must exceed"}},
		{"unknown flag", nil, []string{"--provision-wrokers", "3"}, []string{"-provision-wrokers", "not defined"}},
		{"flag bad value", nil, []string{"--terminate-max-attempts", "-1"}, []string{"-terminate-max-attempts", "an integer from 1 to 100000"}},
		{"positional argument", nil, []string{"run"}, []string{"unexpected positional argument"}},
		{"positional secret", nil, []string{"API_KEY=" + wcSecret}, []string{"unexpected positional argument", "not repeated"}},
		{"ui password as a flag", nil, []string{"--ui-pass", wcPass}, []string{"not defined: -ui-pass"}},
		{"ui password as a flag with =", nil, []string{"--ui-pass=" + wcPass}, []string{"not defined: -ui-pass"}},
		{"database url as a flag", nil, []string{"--database-url", "postgres://u:" + wcSecret + "@h/db"}, []string{"not defined: -database-url"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseWorker(tt.args, wcEnv(tt.vars))

			require.Error(t, err)
			require.ErrorIs(t, err, config.ErrUsage, "exit 2")
			for _, w := range tt.want {
				require.Contains(t, err.Error(), w)
			}
			require.NotContains(t, err.Error(), "\n", "one line")
			require.NotContains(t, err.Error(), wcSecret)
			require.NotContains(t, err.Error(), wcPass)
		})
	}
}

// The worker's --help is the operator's reference: every flag, its env
// var and its default, plus the CP's env-only variables.
func TestWorkerUsage_ListsEveryFlagEnvVarAndDefault(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	WorkerUsage(&buf)
	help := buf.String()

	var c WorkerConfig
	set := config.New("worker", func(string) string { return "" })
	workerSettings(set, &c)
	entries := set.Entries()
	require.NotEmpty(t, entries)
	for _, e := range entries {
		line := "--" + e[0]
		if e[1] != "" {
			line += "  (env " + e[1] + ")"
		}
		if e[0] == "" {
			line = e[1] + "  (env only)"
		}
		if e[2] != "" {
			line += "  [default " + e[2] + "]"
		}
		require.Contains(t, help, line+"\n", "help line for --%s", e[0])
		require.NotEmpty(t, e[3], "--%s has no help text", e[0])
	}
	for _, name := range WorkerEnvNames() {
		require.Contains(t, help, name)
	}
	require.Contains(t, help, cp.DefaultBaseURL)
	require.Contains(t, help, "CP_TIMEOUT [default "+cp.DefaultTimeout.String()+"]")
}

func TestWorkerUsage_NeverPrintsASecretDefault(t *testing.T) {
	t.Parallel()
	var c WorkerConfig
	set := config.New("worker", wcEnv(nil))
	workerSettings(set, &c)
	var buf bytes.Buffer
	set.Usage(&buf)
	require.NotContains(t, buf.String(), wcPass)
	require.NotContains(t, buf.String(), wcSecret)
	require.Contains(t, buf.String(), "  RIVER_BASIC_AUTH_PASS  (env only)\n")
}

// Finding 7: secrets on the command line show in ps and shell
// histories. RIVER_BASIC_AUTH_PASS and DATABASE_URL are env only, for
// every command that reads them, and --help still names them.
func TestSecretSettings_AreEnvOnlyAndListedInHelp(t *testing.T) {
	t.Parallel()
	var c WorkerConfig
	set := config.New("worker", wcEnv(nil))
	workerSettings(set, &c)
	for _, name := range []string{"ui-pass", "database-url"} {
		require.Nil(t, set.FlagSet().Lookup(name), "worker --%s", name)
	}
	var buf bytes.Buffer
	WorkerUsage(&buf)
	require.Contains(t, buf.String(), "  DATABASE_URL  (env only)\n")
	require.Contains(t, buf.String(), "  RIVER_BASIC_AUTH_PASS  (env only)\n")
	require.Contains(t, WorkerSettingsTable(), "| (env only) | `RIVER_BASIC_AUTH_PASS` |")

	var cm common
	eset := config.New("enqueue", wcEnv(nil))
	commonSettings(eset, &cm)
	require.Nil(t, eset.FlagSet().Lookup("database-url"), "enqueue --database-url")

	for _, args := range [][]string{{"up", "--database-url", "postgres://u:" + wcSecret + "@h/db"}, {"up", wcSecret}, {wcSecret}} {
		err := RunMigrate(t.Context(), args, wcEnv(map[string]string{"DATABASE_URL": ""}), io.Discard)
		require.ErrorIs(t, err, config.ErrUsage, "%q", args)
		require.NotContains(t, err.Error(), wcSecret, "%q", args)
	}
}

// The process-level contract: exit 2 and a message on stderr before
// anything starts (no database is reachable at this URL, so a worker that
// got past configuration would exit 1 instead).
func TestWorkerProcess_BadConfigExits2BeforeStarting(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds cmd/worker")
	}
	bin := filepath.Join(t.TempDir(), "worker")
	build := exec.Command("go", "build", "-o", bin, "github.com/molecule-ai/provision-worker/cmd/worker")
	build.Stderr = os.Stderr
	require.NoError(t, build.Run())
	good := []string{"DATABASE_URL=postgres://nobody@127.0.0.1:1/none?sslmode=disable", "MOLECULE_ORG_ID=org-1",
		"MOLECULE_CP_SHARED_SECRET=" + wcSecret, "PATH=" + os.Getenv("PATH")}
	tests := []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"missing org id", []string{"DATABASE_URL=postgres://x@127.0.0.1:1/db"}, nil, "MOLECULE_ORG_ID"},
		{"malformed cp url", append(good, "CP_PROVISION_URL=::nope"), nil, "CP_PROVISION_URL"},
		{"bad duration", append(good, "CP_TIMEOUT=fast"), nil, "CP_TIMEOUT"},
		{"bad number", append(good, "PROVISION_WORKERS=-3"), nil, "PROVISION_WORKERS"},
		{"bad log level", append(good, "LOG_LEVEL=loud"), nil, "LOG_LEVEL"},
		{"unknown flag", good, []string{"--bogus"}, "-bogus"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(bin, tt.args...)
			cmd.Env = tt.env
			var stderr bytes.Buffer
			cmd.Stderr = &stderr

			err := cmd.Run()

			var exit *exec.ExitError
			require.True(t, errors.As(err, &exit), "want exit 2, got %v", err)
			require.Equal(t, 2, exit.ExitCode(), stderr.String())
			first := strings.SplitN(stderr.String(), "\n", 2)[0]
			require.True(t, strings.HasPrefix(first, "worker: "), first)
			require.Contains(t, first, tt.want)
			require.NotContains(t, stderr.String(), wcSecret)
		})
	}
	t.Run("help lists settings and exits 0", func(t *testing.T) {
		out, err := exec.Command(bin, "--help").Output()
		require.NoError(t, err)
		require.Contains(t, string(out), "--provision-timeout  (env PROVISION_TIMEOUT)  [default 2m0s]")
		require.Contains(t, string(out), "MOLECULE_ORG_ID")
	})
}

// The command and an embedding host read the same variables into the
// same settings: workerConfig(ParseWorker(env)) equals
// provisioner.FromEnv(env), field for field, for defaults and for every
// value changed.
func TestWorkerConfig_SameAsFromEnv(t *testing.T) {
	t.Parallel()
	changed := map[string]string{
		"DATABASE_SCHEMA": "hostwork", "RIVER_BASIC_AUTH_USER": "ops", "RIVER_BASIC_AUTH_PASS": wcPass,
		"SHUTDOWN_TIMEOUT": "7s", "EVENT_RETENTION": "48h", "EVENT_PRUNE_INTERVAL": "10m", "EVENT_PRUNE_BATCH_SIZE": "500",
		"PROVISION_WORKERS": "3", "TERMINATE_WORKERS": "4",
		"FETCH_COOLDOWN": "7ms", "FETCH_POLL_INTERVAL": "70ms", "RESCUE_AFTER": "9m", "DISCARDED_RETENTION": "72h",
		"PROVISION_TIMEOUT": "3m", "TERMINATE_TIMEOUT": "4m", "BACKOFF_BASE": "2s", "TERMINATE_BACKOFF_CAP": "1m",
		"PROVISION_BACKOFF_CAP": "2m", "TERMINATE_MAX_ATTEMPTS": "11", "PROVISION_MAX_ATTEMPTS": "12",
		"TERMINATE_STUCK_AFTER": "5", "MAX_SNOOZES": "13", "SNOOZE_CAP": "3m", "REFUSE_AMBIGUOUS_WITHOUT_LIST": "true",
		"COMPLETION_SYNCHRONOUS_COMMIT": "off",
		"SWEEP_ENABLED":                 "true", "SWEEP_INTERVAL": "2m", "SWEEP_GRACE": "30m", "SWEEP_MAX_TERMINATIONS": "9",
		"SWEEP_BREAKER_SHARE": "0.3", "SWEEP_BREAKER_MIN_STRAYS": "4", "PROVISIONING_DEADLINE": "2h", "SWEEP_DRY_RUN": "true",
		"CP_TIMEOUT": "20s", "ADMIN_TOKEN": "adm", "CP_ADMIN_API_TOKEN": "key",
	}
	for name, vars := range map[string]map[string]string{"defaults": nil, "every value changed": changed} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			getenv := wcEnv(vars)
			c, err := ParseWorker(nil, getenv)
			require.NoError(t, err)
			lib, err := provisioner.FromEnv(getenv)
			require.NoError(t, err)
			lib.Logger = zerolog.Logger{}
			require.Equal(t, lib, workerConfig(c))
		})
	}
}
