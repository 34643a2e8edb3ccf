package app_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/molecule-ai/provision-worker/internal/app"
	"github.com/molecule-ai/provision-worker/internal/jobtest"
)

// enqueue runs the CLI against env's database, as a script would.
func enqueue(t *testing.T, env *jobtest.Env, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	getenv := func(k string) string {
		if k == "DATABASE_URL" {
			return env.DBURL
		}
		return ""
	}
	err := app.RunEnqueue(context.Background(), app.CLI{Out: &out, Err: &errOut, Getenv: getenv}, args)
	return out.String(), err
}
