// Command enqueue is the operator's and scripts' door to the same library
// calls request handlers make: each subcommand runs in one transaction
// (the row change and its job commit together or not at all) and prints
// JSON. Exit 0 done, 2 bad input (nothing written), 1 anything else.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/molecule-ai/provision-worker/internal/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cli := app.CLI{In: os.Stdin, Out: os.Stdout, Err: os.Stderr, Getenv: os.Getenv, LookupEnv: os.LookupEnv}
	err := app.RunEnqueue(ctx, cli, os.Args[1:])
	switch {
	case err == nil || app.IsHelp(err):
		os.Exit(0)
	case app.IsBadInput(err):
		fmt.Fprintln(os.Stderr, "enqueue:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "enqueue:", err)
		os.Exit(1)
	}
}
