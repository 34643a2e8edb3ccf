package app_test

import (
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/app"
)

var updateREADME = flag.Bool("update-readme", false, "rewrite the README's settings table")

const (
	tableBegin = "<!-- settings-table:begin -->\n"
	tableEnd   = "<!-- settings-table:end -->"
)

// TestREADME_SettingsTableMatchesHelp keeps the README's table equal to
// what the worker really reads. Regenerate with:
//
//	go test ./internal/app -run TestREADME -update-readme
func TestREADME_SettingsTableMatchesHelp(t *testing.T) {
	const path = "../../README.md"
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	readme := string(b)
	i, j := strings.Index(readme, tableBegin), strings.Index(readme, tableEnd)
	require.True(t, i >= 0 && j > i, "README lacks the settings-table markers")
	want := app.WorkerSettingsTable()
	if *updateREADME {
		readme = readme[:i+len(tableBegin)] + want + readme[j:]
		require.NoError(t, os.WriteFile(path, []byte(readme), 0o644))
		return
	}
	require.Equal(t, want, readme[i+len(tableBegin):j], "run: go test ./internal/app -run TestREADME -update-readme")
}

// TestREADME_ShowsTheExampleHandler keeps the README's handler the code
// that `make test` compiles from outside the module.
func TestREADME_ShowsTheExampleHandler(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	code, err := os.ReadFile("../../examples/handler/handler.go")
	require.NoError(t, err)
	require.Contains(t, string(readme), "```go\n"+string(code)+"```\n",
		"the README's adoption section must show examples/handler/handler.go as it is")
}
