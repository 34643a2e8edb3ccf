// Package app holds the two commands' logic, so cmd/worker and
// cmd/enqueue only wire and exit: the worker process (River client, HTTP,
// graceful shutdown, migrations) and the enqueue CLI.
package app

import (
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/molecule-ai/provision-worker/internal/config"
	"github.com/molecule-ai/provision-worker/internal/workerenv"
)

// WorkerConfig is everything the worker process reads; its settings are
// declared once, in internal/workerenv, which provisioner.FromEnv reads
// too.
type WorkerConfig = workerenv.Config

// workerSettings declares every setting of the worker on set.
func workerSettings(set *config.Set, c *WorkerConfig) { workerenv.Declare(set, c) }

// ParseWorker reads the worker's settings from args and the environment.
// Errors wrap config.ErrUsage (exit 2) and name the variable at fault.
func ParseWorker(args []string, getenv func(string) string) (WorkerConfig, error) {
	c, err := workerenv.Parse("worker", args, getenv)
	if err != nil {
		return c, err
	}
	return c, checkHTTP(c)
}

// checkHTTP checks what only the command has: its own listening address,
// where River UI without credentials would be reachable off loopback.
func checkHTTP(c WorkerConfig) error {
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		return fmt.Errorf("%w: WORKER_HTTP_ADDR: want host:port, got %q", config.ErrUsage, c.HTTPAddr)
	}
	if c.UIUser == "" && !config.IsLoopback(c.HTTPAddr) {
		return fmt.Errorf("%w: RIVER_BASIC_AUTH_USER and RIVER_BASIC_AUTH_PASS are required when WORKER_HTTP_ADDR (%s) is not a loopback address: River UI can retry and cancel jobs", config.ErrUsage, c.HTTPAddr)
	}
	return nil
}

// WorkerUsage writes the worker's --help.
func WorkerUsage(w io.Writer) {
	var c WorkerConfig
	set := config.New("worker", func(string) string { return "" })
	workerSettings(set, &c)
	fmt.Fprintln(w, "Usage:")
	workerCommandLine(w, "[flags]", "run the worker until SIGTERM/SIGINT")
	for _, c := range workerCommands {
		workerCommandLine(w, c.Name+" "+c.Args, c.Summary)
	}
	fmt.Fprint(w, `
The control plane is configured by env only (see docs/design.md#cp-contract):
  MOLECULE_ORG_ID (required), CP_PROVISION_URL / MOLECULE_CP_URL
  [default https://api.moleculesai.app], MOLECULE_CP_SHARED_SECRET
  (fallback PROVISION_SHARED_SECRET), ADMIN_TOKEN, CP_ADMIN_API_TOKEN
  (fallback: the shared secret), CP_TIMEOUT [default 30s].

Settings (a flag is also read from the env var shown, and wins over it;
secrets are read from env only, so they never show in ps):
`)
	set.Usage(w)
}

// WorkerSettingsTable renders the worker's settings as the README's
// Markdown table, so the README cannot drift from --help.
func WorkerSettingsTable() string {
	var c WorkerConfig
	set := config.New("worker", func(string) string { return "" })
	workerSettings(set, &c)
	var b strings.Builder
	b.WriteString("| flag | env | default | meaning |\n|---|---|---|---|\n")
	for _, e := range set.Entries() {
		flagCol := "`--" + e[0] + "`"
		if e[0] == "" {
			flagCol = "(env only)"
		}
		def := e[2]
		if def == "" {
			def = " "
		} else {
			def = "`" + def + "`"
		}
		fmt.Fprintf(&b, "| %s | `%s` | %s | %s |\n", flagCol, e[1], def, strings.ReplaceAll(e[3], "|", "\\|"))
	}
	return b.String()
}

// The shared declarations and checks enqueue and migrate use too.
var (
	checkDatabaseURL = workerenv.CheckDatabaseURL
	schemaSetting    = workerenv.SchemaSetting
	checkSchema      = workerenv.CheckSchema
)
