package app

import (
	"sort"

	"github.com/molecule-ai/provision-worker/internal/config"
	"github.com/molecule-ai/provision-worker/internal/cp"
)

// The env var names each command really reads, taken from the same
// declarations the parsers use, so docker-compose.yml and the README can
// be checked against them: a misspelt variable in a deployment file is
// silently ignored and the default runs instead (on a loopback address,
// without credentials, against the production CP).

// WorkerEnvNames lists every env var `worker` reads: its settings and the
// CP client's.
func WorkerEnvNames() []string {
	var c WorkerConfig
	set := config.New("worker", func(string) string { return "" })
	workerSettings(set, &c)
	return sortedNames(entryEnvs(set), CPEnvNames())
}

// MigrateEnvNames lists the env vars `worker migrate` reads.
func MigrateEnvNames() []string { return []string{"DATABASE_SCHEMA", "DATABASE_URL"} }

// EnqueueEnvNames lists the env vars `enqueue` subcommands read: the
// common settings, and the CP client's (`enqueue console`).
func EnqueueEnvNames() []string {
	var c common
	set := config.New("enqueue", func(string) string { return "" })
	commonSettings(set, &c)
	return sortedNames(entryEnvs(set), CPEnvNames())
}

// CPEnvNames lists the variables cp.ConfigFromEnv asks for, recorded by
// calling it rather than copied from its source.
func CPEnvNames() []string {
	seen := map[string]bool{}
	_, _ = cp.ConfigFromEnv(func(k string) string {
		seen[k] = true
		if k == "MOLECULE_ORG_ID" {
			return "x" // past the required check, so every later read happens
		}
		return ""
	})
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func entryEnvs(set *config.Set) []string {
	var out []string
	for _, e := range set.Entries() {
		if e[1] != "" {
			out = append(out, e[1])
		}
	}
	return out
}

func sortedNames(lists ...[]string) []string {
	seen := map[string]bool{}
	var out []string
	for _, l := range lists {
		for _, n := range l {
			if !seen[n] {
				seen[n] = true
				out = append(out, n)
			}
		}
	}
	sort.Strings(out)
	return out
}
