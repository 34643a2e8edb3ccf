package app

import (
	"context"
	"fmt"
	"io"
)

// WorkerCommand is one `worker` subcommand. `worker` without one runs the
// worker itself; cmd/worker dispatches from WorkerCommands and WorkerUsage
// lists it, so the two cannot disagree.
type WorkerCommand struct {
	Name    string
	Args    string // what follows the name in the --help list
	Summary string // one line of `worker --help`
	Run     func(ctx context.Context, args []string, getenv func(string) string, out io.Writer) error
	Usage   func(w io.Writer) // `worker <name> --help`
}

// workerCommands is every `worker` subcommand, in --help order.
var workerCommands = []WorkerCommand{
	{Name: "migrate", Args: "up|down|status", Summary: "run the goose migrations (down: [--to N] [--force])",
		Run: RunMigrate, Usage: MigrateUsage},
}

// FindWorkerCommand returns the `worker` subcommand args[0] names, if any.
func FindWorkerCommand(args []string) (WorkerCommand, bool) {
	if len(args) == 0 {
		return WorkerCommand{}, false
	}
	for _, c := range workerCommands {
		if c.Name == args[0] {
			return c, true
		}
	}
	return WorkerCommand{}, false
}

// workerCommandLine is one row of the Usage list at the top of
// `worker --help`.
func workerCommandLine(w io.Writer, synopsis, summary string) {
	fmt.Fprintf(w, "  worker %-25s %s\n", synopsis, summary)
}
