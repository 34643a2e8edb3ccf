package app

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/config"
)

// FuzzEnvFlag feeds --env arguments (the one flag whose values may be
// secrets) through the enqueue parser. Properties: no panic; every
// rejection is bad input (exit 2) and never repeats the value; an
// accepted K=V is stored exactly, and a bare K reads the environment.
func FuzzEnvFlag(f *testing.F) {
	for _, s := range [][2]string{
		{"K=v", "K2=v2"}, {"K=v", "K=w"}, {"=secret", ""}, {"K", ""}, {"K=a=b", "L="},
		{"K=\x00", "\xff=x"}, {"BAD-KEY=s3cret", "k"}, {"K=" + strings.Repeat("v", 40000), ""}, {"UNSET_K", "K"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		// Names starting with UNSET are not in the environment.
		e := envFlag{lookup: func(k string) (string, bool) { return "from-env:" + k, !strings.HasPrefix(k, "UNSET") }}
		for _, arg := range []string{a, b} {
			err := e.Set(arg)
			k, v, hasValue := strings.Cut(arg, "=")
			if err != nil {
				require.ErrorIs(t, err, config.ErrUsage)
				// Short values may be words of the message itself.
				if len(v) >= 12 && !strings.Contains(k, v) {
					require.NotContains(t, err.Error(), v, "an --env value was echoed")
				}
				return
			}
			require.NotEmpty(t, k)
			require.False(t, !hasValue && strings.HasPrefix(k, "UNSET"), "an unset name was accepted")
			if !hasValue {
				v = "from-env:" + k
			}
			require.Equal(t, v, e.values[k])
		}
	})
}

// FuzzParseWorker feeds arbitrary flags and env values to the worker's
// parser. Properties: no panic; an error is always bad input (exit 2),
// one line, and never repeats a secret variable's value; success means
// the cross-setting rules hold.
func FuzzParseWorker(f *testing.F) {
	f.Add("--provision-workers", "3", "CP_TIMEOUT", "10s")
	f.Add("--sweep-breaker-share", "NaN", "SWEEP_BREAKER_SHARE", "1e309")
	f.Add("--http-addr", "0.0.0.0:80", "WORKER_HTTP_ADDR", "[::]:1")
	f.Add("--bogus", "", "CP_PROVISION_URL", "https://u:p@h/?q=1")
	f.Add("-h", "", "MOLECULE_ORG_ID", "")
	f.Add("--rescue-after", "1ns", "PROVISION_TIMEOUT", "9223372036854775807ns")
	const secret = "fzSECRET-1729"
	f.Fuzz(func(t *testing.T, flagName, flagValue, envName, envValue string) {
		vars := map[string]string{
			"DATABASE_URL": "postgres://127.0.0.1/db", "MOLECULE_ORG_ID": "org",
			"MOLECULE_CP_SHARED_SECRET": secret, "ADMIN_TOKEN": secret, "CP_ADMIN_API_TOKEN": secret,
			"RIVER_BASIC_AUTH_PASS": secret, "RIVER_BASIC_AUTH_USER": "ops",
		}
		vars[envName] = envValue
		args := []string{flagName}
		if flagValue != "" {
			args = append(args, flagValue)
		}
		c, err := ParseWorker(args, func(k string) string { return vars[k] })
		if err != nil {
			if IsHelp(err) {
				return
			}
			require.True(t, errors.Is(err, config.ErrUsage), "want bad input, got %v", err)
			require.NotContains(t, err.Error(), "\n")
			if !strings.Contains(flagValue+envValue+flagName+envName, secret) {
				require.NotContains(t, err.Error(), secret)
			}
			return
		}
		require.Greater(t, c.Settings.ProvisionTimeout, c.CP.Timeout)
		require.Greater(t, c.Settings.TerminateTimeout, c.CP.Timeout)
		require.Greater(t, c.Options.RescueAfter, c.Settings.ProvisionTimeout)
		require.True(t, c.UIUser != "" || config.IsLoopback(c.HTTPAddr), "public address without UI credentials")
		require.True(t, c.Sweep.BreakerShare >= 0 && c.Sweep.BreakerShare <= 1)
	})
}
