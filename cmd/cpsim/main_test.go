package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/config"
	"github.com/molecule-ai/provision-worker/internal/cp/cpfake"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestParse_FlagsEnvAndDefaults(t *testing.T) {
	t.Parallel()
	s, err := parse(nil, envOf(map[string]string{"MOLECULE_ORG_ID": "org-x", "CPSIM_LATENCY": "5ms",
		"CPSIM_FAULT_LOST": "0.25", "CPSIM_NO_LIST": "true", "PROVISION_SHARED_SECRET": "s"}))
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:8081", s.addr)
	require.Equal(t, "org-x", s.opts.OrgID)
	require.Equal(t, 5*time.Millisecond, s.opts.Latency)
	require.Equal(t, 2*time.Second, s.opts.BootTime)
	require.Equal(t, 0.25, s.opts.Faults.LostAnswer)
	require.True(t, s.opts.NoList)
	require.Equal(t, cpfake.DialectFull, s.opts.Dialect)
	require.Equal(t, "s", s.opts.SharedSecret)
	require.Equal(t, "s", s.opts.AdminAPIKey, "admin key falls back to the shared secret")

	s, err = parse([]string{"--latency", "0s", "--org-id", "o2", "--fault-5xx", "1"},
		envOf(map[string]string{"CPSIM_LATENCY": "5ms", "CPSIM_ORG_ID": "o1"}))
	require.NoError(t, err)
	require.Zero(t, s.opts.Latency, "the flag wins over the env var")
	require.Equal(t, "o2", s.opts.OrgID)
	require.Equal(t, 1.0, s.opts.Faults.Error5xx)

	s, err = parse([]string{"--dialect", "plain-go"}, envOf(nil))
	require.NoError(t, err)
	require.Equal(t, cpfake.DialectPlainGo, s.opts.Dialect)
}

func TestParse_Errors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"bad env duration", nil, map[string]string{"CPSIM_BOOT_TIME": "2"}, "CPSIM_BOOT_TIME"},
		{"bad env bool", nil, map[string]string{"CPSIM_NO_LIST": "yes please"}, "CPSIM_NO_LIST"},
		{"share out of range", []string{"--fault-reset", "1.5"}, nil, "[0,1]"},
		{"unknown dialect", nil, map[string]string{"CPSIM_DIALECT": "xml"}, "CPSIM_DIALECT"},
		{"stray argument", []string{"API_KEY=sk-live-abc123"}, nil, "unexpected arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := parse(tt.args, envOf(tt.env))
			require.ErrorContains(t, err, tt.want)
			require.NotContains(t, err.Error(), "sk-live", "a stray argument is never repeated")
		})
	}
}

func TestRun_RefusesRemoteAddr(t *testing.T) {
	t.Parallel()
	err := run([]string{"--addr", "0.0.0.0:0"}, envOf(nil))
	require.ErrorContains(t, err, "--allow-remote")
}

func TestIsLoopback(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]bool{
		"127.0.0.1:8081": true, "[::1]:80": true, "localhost:1": true, "127.9.9.9:1": true,
		":8081": false, "0.0.0.0:1": false, "10.0.0.1:1": false, "example.com:1": false, "nonsense": false,
	} {
		require.Equal(t, want, config.IsLoopback(addr), addr)
	}
}
