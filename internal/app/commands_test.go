package app

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The help is printed from the command tables: every entry is listed,
// once, in the table's order, and nothing else is.
func TestEnqueueUsage_ListsEveryTableEntry(t *testing.T) {
	var buf bytes.Buffer
	EnqueueUsage(&buf)
	var listed []string
	for _, line := range strings.Split(buf.String(), "\n") {
		if strings.HasPrefix(line, "  ") {
			listed = append(listed, line)
		}
	}
	want := make([]string, 0, len(commands))
	for _, c := range commands {
		want = append(want, fmt.Sprintf("  %-10s %s", c.name, c.summary))
	}
	require.Equal(t, want, listed)
}

// --help has always listed the subcommands by name; the table keeps
// that order, and a name twice would shadow the second entry.
func TestEnqueueCommands_SortedUniqueAndComplete(t *testing.T) {
	names := make([]string, 0, len(commands))
	for _, c := range commands {
		require.NotEmpty(t, c.summary, c.name)
		require.NotEmpty(t, c.usage, c.name)
		require.NotNil(t, c.run, c.name)
		require.NotContains(t, c.summary, "\n", "%s: the summary is one line", c.name)
		names = append(names, c.name)
	}
	require.True(t, slices.IsSorted(names), "commands not sorted by name: %v", names)
	require.Equal(t, len(names), len(slices.Compact(slices.Clone(names))), "a name twice: %v", names)
	require.Equal(t, []string{"console", "import", "provision", "restart", "retry", "sweep", "terminate", "timeline"}, names)
}

// Each subcommand runs from its own row: `enqueue <name> --help` prints
// that row's usage line, so a usage wired to the wrong run shows here.
func TestEnqueueSubcommandHelp_PrintsItsRowsUsage(t *testing.T) {
	for _, c := range commands {
		t.Run(c.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			cli := CLI{Out: &out, Err: &errOut, Getenv: func(string) string { return "" }}
			err := RunEnqueue(context.Background(), cli, []string{c.name, "--help"})
			require.True(t, IsHelp(err), "want help, got %v", err)
			require.True(t, strings.HasPrefix(out.String(), "Usage: enqueue "+c.usage+"\n"), out.String())
			require.Contains(t, out.String(), "DATABASE_URL")
		})
	}
}

func TestWorkerUsage_ListsEveryWorkerCommand(t *testing.T) {
	var buf bytes.Buffer
	WorkerUsage(&buf)
	for _, c := range workerCommands {
		require.Contains(t, buf.String(), fmt.Sprintf("  worker %-25s %s\n", c.Name+" "+c.Args, c.Summary))
		got, ok := FindWorkerCommand([]string{c.Name, "status"})
		require.True(t, ok, c.Name)
		require.Equal(t, c.Name, got.Name)
	}
	for _, args := range [][]string{nil, {}, {"--help"}, {"migrat"}} {
		_, ok := FindWorkerCommand(args)
		require.False(t, ok, "%q runs the worker, not a subcommand", args)
	}
}
