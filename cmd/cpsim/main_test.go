package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/config"
	"github.com/molecule-ai/provision-worker/internal/cp"
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

func TestParse_Fleet(t *testing.T) {
	t.Parallel()
	s, err := parse(nil, envOf(nil))
	require.NoError(t, err)
	require.Equal(t, fleet{n: 0, seed: 1, age: 24 * time.Hour}, s.fleet, "no fleet by default")
	s, err = parse([]string{"--fleet", "1000000", "--fleet-age", "1h"}, envOf(map[string]string{"CPSIM_FLEET_SEED": "9"}))
	require.NoError(t, err)
	require.Equal(t, fleet{n: 1_000_000, seed: 9, age: time.Hour}, s.fleet)
	_, err = parse([]string{"--fleet", "-1"}, envOf(nil))
	require.ErrorContains(t, err, "--fleet")
}

// TestRun_ServesTheSeededFleetOnceListening: by the time "cpsim listening"
// is logged (what the bench waits for) the whole fleet is listed, with
// the ids FleetMember derives, launched --fleet-age ago.
func TestRun_ServesTheSeededFleetOnceListening(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	logs, w := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--addr", "127.0.0.1:0", "--latency", "0s", "--fleet", "2500", "--fleet-seed", "3"},
			envOf(map[string]string{"MOLECULE_ORG_ID": "org-f"}), w)
		_ = w.Close()
	}()
	lines := bufio.NewScanner(logs)
	url := ""
	for url == "" && lines.Scan() {
		var l struct{ Msg, URL string }
		require.NoError(t, json.Unmarshal(lines.Bytes(), &l))
		if l.Msg == "cpsim listening" {
			url = l.URL
		}
	}
	require.NotEmpty(t, url, "no listening line")
	go func() { _, _ = io.Copy(io.Discard, logs) }() // request lines

	api, err := cp.New(cp.Config{BaseURL: url, OrgID: "org-f"})
	require.NoError(t, err)
	want := map[string]string{}
	for i := range 2500 {
		ws, inst := cpfake.FleetMember(3, i)
		want[inst] = ws
	}
	got, cursor := map[string]string{}, ""
	for {
		page, err := api.List(ctx, cp.ListOptions{Cursor: cursor, Limit: 1000})
		require.NoError(t, err)
		for _, in := range page.Instances {
			require.Equal(t, "running", in.State)
			require.WithinDuration(t, time.Now().Add(-24*time.Hour), in.LaunchedAt, time.Hour)
			got[in.InstanceID] = in.WorkspaceID
		}
		if cursor = page.NextCursor; cursor == "" {
			break
		}
	}
	require.Equal(t, want, got)
	cancel()
	require.NoError(t, <-done)
}

func TestRun_RefusesRemoteAddr(t *testing.T) {
	t.Parallel()
	err := run(context.Background(), []string{"--addr", "0.0.0.0:0"}, envOf(nil), io.Discard)
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
