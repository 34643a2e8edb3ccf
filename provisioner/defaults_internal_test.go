package provisioner

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// A hand-built Config runs with the command's defaults: New's
// withDefaults of Config{} and of FromEnv's empty environment agree on
// every setting the two share. Each default lives in one place (jobs,
// internal/workerenv); a hand-built Config used to keep zero worker
// counts and DiscardedRetention here, which worker.started logged as 0.
func TestWithDefaults_HandBuiltConfigGetsTheCommandsDefaults(t *testing.T) {
	env := map[string]string{"DATABASE_URL": "postgres://u@127.0.0.1:1/db", "MOLECULE_ORG_ID": "org-1"}
	fromEnv, err := FromEnv(func(k string) string { return env[k] })
	require.NoError(t, err)
	want := fromEnv.withDefaults()
	got := Config{}.withDefaults()

	want.Options.Logger, got.Options.Logger = nil, nil
	require.Equal(t, want.Options, got.Options)
	require.Equal(t, want.Settings, got.Settings)
	require.Equal(t, want.Sweep, got.Sweep)
	require.Equal(t, want.ShutdownTimeout, got.ShutdownTimeout)
	require.Equal(t, want.Prune, got.Prune)
	require.Equal(t, want.CP.Timeout, got.CP.Timeout)
	require.Equal(t, want.CP.BaseURL, got.CP.BaseURL)
}
