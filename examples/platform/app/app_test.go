package app_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"example.com/platform/app"
	"example.com/platform/hostdb"
	"example.com/platform/internal/pgtest"
	"example.com/platform/secrets"
)

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.Cleanup()
	os.Exit(code)
}

// A bad key is a usage error that never quotes the value.
func TestConfigFromEnv_RefusesABadSecretsKey(t *testing.T) {
	const bad = "not-a-key-s3cr3t"
	_, err := app.ConfigFromEnv(func(k string) string {
		if k == "SECRETS_KEY" {
			return bad
		}
		return ""
	})
	require.ErrorIs(t, err, app.ErrUsage)
	require.ErrorIs(t, err, secrets.ErrKey)
	require.NotContains(t, err.Error(), bad)
}

const ws = "00000000-0000-4000-8000-000000000001"

// The env hook decrypts the workspace's secrets from the host's table at
// call time; a value that does not decrypt is an error naming neither its
// key nor its value (the worker retries it like a CP error).
func TestEnvHook_DecryptsAtCallTime(t *testing.T) {
	ctx := context.Background()
	db := pgtest.Open(t, pgtest.NewDB(t))
	_, err := hostdb.Migrate(ctx, db)
	require.NoError(t, err)
	box, err := secrets.NewBox(secrets.NewKey())
	require.NoError(t, err)
	tx, err := db.Begin()
	require.NoError(t, err)
	require.NoError(t, hostdb.Insert(ctx, tx, hostdb.Workspace{ID: ws, Name: "w", Runtime: "python"}))
	require.NoError(t, hostdb.PutSecrets(ctx, tx, ws, []hostdb.EncryptedSecret{
		{Key: "API_KEY", Value: box.Seal(ws, "API_KEY", "v1-s3cr3t"), Version: secrets.Version},
		{Key: "DB_PASS", Value: box.Seal(ws, "DB_PASS", "v2-s3cr3t"), Version: secrets.Version},
	}))
	require.NoError(t, tx.Commit())

	hook := app.EnvHook(db, box)
	env, err := hook(ctx, ws)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"API_KEY": "v1-s3cr3t", "DB_PASS": "v2-s3cr3t"}, env)

	none, err := hook(ctx, "00000000-0000-4000-8000-000000000002")
	require.NoError(t, err)
	require.Empty(t, none, "a workspace without secrets gets an empty env")

	// Rotated away from under it: the stored value no longer opens.
	other, err := secrets.NewBox(secrets.NewKey())
	require.NoError(t, err)
	_, err = db.Exec(`UPDATE public.workspace_secrets SET encrypted_value = $2 WHERE workspace_id = $1 AND key = 'DB_PASS'`,
		ws, other.Seal(ws, "DB_PASS", "v3-s3cr3t"))
	require.NoError(t, err)
	env, err = hook(ctx, ws)
	require.ErrorIs(t, err, secrets.ErrDecrypt)
	require.Nil(t, env)
	for _, s := range []string{"DB_PASS", "s3cr3t"} {
		require.False(t, strings.Contains(err.Error(), s), "the error names %q", s)
	}
}

// River UI (it can cancel every stop) is served on the host's listener,
// so off loopback the worker's rule applies: no credentials, no start.
// Needs provisioner.FromEnv (the embedded worker's part of issue 13).
func TestConfigFromEnv_RefusesRiverUIWithoutAuthOffLoopback(t *testing.T) {
	cases := []struct {
		addr, user string
		ok         bool
	}{
		{"127.0.0.1:8090", "", true},
		{"localhost:8090", "", true},
		{"[::1]:8090", "", true},
		{"0.0.0.0:8090", "", false},
		{"10.0.0.5:8090", "", false},
		{"0.0.0.0:8090", "operator", true},
	}
	for _, tc := range cases {
		t.Run(tc.addr+"/"+tc.user, func(t *testing.T) {
			env := map[string]string{
				"SECRETS_KEY": secrets.NewKey(), "PLATFORM_ADDR": tc.addr,
				"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/x?sslmode=disable", "MOLECULE_ORG_ID": "org",
			}
			if tc.user != "" {
				env["RIVER_BASIC_AUTH_USER"], env["RIVER_BASIC_AUTH_PASS"] = tc.user, "pass-s3cr3t"
			}
			_, err := app.ConfigFromEnv(func(k string) string { return env[k] })
			if tc.ok {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, app.ErrUsage)
			require.Contains(t, err.Error(), "PLATFORM_ADDR")
		})
	}
}
