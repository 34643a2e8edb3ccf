package jobs_test

import (
	"context"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/jobtest"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/jobs"
)

// Values a caller controls travel into Postgres text, uuid and jsonb
// columns. Each must either come back byte for byte or be refused with
// jobs.ErrInvalidInput before anything is written: a value Postgres
// refuses (a NUL, invalid UTF-8) must not surface as a broken transaction
// (exit 1, "try again") and one it silently rewrites (invalid UTF-8 in
// jsonb becomes U+FFFD) must not be stored as something the caller did
// not send.

const sqlInjection = `'); DROP TABLE workspaces; --`

// sqlCounts is every table a request writes.
func sqlCounts(t *testing.T, e *jobtest.Env) [4]int {
	t.Helper()
	var c [4]int
	require.NoError(t, e.Pool.QueryRow(context.Background(), `SELECT
		(SELECT count(*) FROM workspaces), (SELECT count(*) FROM workspace_env),
		(SELECT count(*) FROM workspace_events), (SELECT count(*) FROM river_job)`).Scan(&c[0], &c[1], &c[2], &c[3]))
	return c
}

func TestSQLValues_AcceptedValuesReadBackUnchanged(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", 16<<10) // 32 KiB of two-byte runes: the value cap
	tests := []struct {
		name string
		req  jobs.ProvisionRequest
	}{
		{"quotes in platform url", jobs.ProvisionRequest{PlatformURL: `https://h.example/p?q='x'&r="y"` + sqlEscape(sqlInjection)}},
		{"unicode platform url", jobs.ProvisionRequest{PlatformURL: "https://例え.jp/パス/😀"}},
		{"longest platform url", jobs.ProvisionRequest{PlatformURL: "https://h.example/" + strings.Repeat("a", 2048-len("https://h.example/"))}},
		{"runtime with every allowed symbol", jobs.ProvisionRequest{Runtime: "py3.12:slim/x_y-z"}},
		{"env with quotes and injection", jobs.ProvisionRequest{Env: map[string]string{"Q": sqlInjection, "D": `"\'\\` + "`$(x)"}}},
		{"env with unicode and escapes", jobs.ProvisionRequest{Env: map[string]string{"U": "日本語 😀 \u202e", "E": `\u0000 is text here`}}},
		{"env with control characters but no NUL", jobs.ProvisionRequest{Env: map[string]string{"C": "a\tb\nc\r\x01\x7f"}}},
		{"env value at the cap", jobs.ProvisionRequest{Env: map[string]string{"L": long}}},
		{"empty env value", jobs.ProvisionRequest{Env: map[string]string{"EMPTY": ""}}},
		{"actor with quotes", jobs.ProvisionRequest{Actor: `o'brien "admin"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := jobtest.New(t, jobtest.Config{NoStart: true})
			ctx := context.Background()
			req := tt.req
			req.WorkspaceID = uuid.NewString()

			e.Provision(req)

			ws := e.Workspace(req.WorkspaceID)
			require.Equal(t, req.PlatformURL, ws.PlatformURL)
			require.Equal(t, req.Runtime, ws.Runtime)
			env, err := store.MustFor("").Env(ctx, e.Pool, req.WorkspaceID)
			require.NoError(t, err)
			want := req.Env
			if want == nil {
				want = map[string]string{}
			}
			require.Equal(t, want, env)
			if req.Actor != "" {
				evs, err := store.MustFor("").Events(ctx, e.Pool, req.WorkspaceID)
				require.NoError(t, err)
				require.Equal(t, req.Actor, evs[0].Actor)
			}
		})
	}
}

func sqlEscape(s string) string {
	return strings.NewReplacer(" ", "%20", "'", "%27", ";", "%3B").Replace(s)
}

func TestSQLValues_RefusedValuesWriteNothing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		req  jobs.ProvisionRequest
		msg  string // in the error: names the field
	}{
		{"injection as workspace id", jobs.ProvisionRequest{WorkspaceID: sqlInjection}, "workspace id must be a UUID"},
		{"uuid with a NUL", jobs.ProvisionRequest{WorkspaceID: uuid.NewString() + "\x00"}, "workspace id must be a UUID"},
		{"very long workspace id", jobs.ProvisionRequest{WorkspaceID: strings.Repeat("a", 1<<20)}, "workspace id must be a UUID"},
		{"quote in runtime", jobs.ProvisionRequest{Runtime: "py'thon"}, "runtime"},
		{"NUL in runtime", jobs.ProvisionRequest{Runtime: "py\x00"}, "runtime"},
		{"very long runtime", jobs.ProvisionRequest{Runtime: strings.Repeat("a", 65)}, "runtime"},
		{"NUL in platform url", jobs.ProvisionRequest{PlatformURL: "https://h.example/\x00"}, "platform url"},
		{"invalid UTF-8 in platform url", jobs.ProvisionRequest{PlatformURL: "https://h.example/\xff\xfe"}, "platform url"},
		{"platform url over the cap", jobs.ProvisionRequest{PlatformURL: "https://h.example/" + strings.Repeat("a", 2048)}, "platform url"},
		{"quote in env key", jobs.ProvisionRequest{Env: map[string]string{"K'": "v"}}, "env key"},
		{"NUL in env key", jobs.ProvisionRequest{Env: map[string]string{"K\x00": "v"}}, "env key"},
		{"NUL in env value", jobs.ProvisionRequest{Env: map[string]string{"K": "a\x00b"}}, "env K"},
		{"invalid UTF-8 in env value", jobs.ProvisionRequest{Env: map[string]string{"K": "a\xffb"}}, "env K"},
		{"env value over the cap", jobs.ProvisionRequest{Env: map[string]string{"K": strings.Repeat("v", 32<<10+1)}}, "env K"},
		{"NUL in actor", jobs.ProvisionRequest{Actor: "ops\x00"}, "actor"},
		{"very long actor", jobs.ProvisionRequest{Actor: strings.Repeat("a", 1<<16)}, "actor"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := jobtest.New(t, jobtest.Config{NoStart: true})
			ctx := context.Background()
			req := tt.req
			if req.WorkspaceID == "" {
				req.WorkspaceID = uuid.NewString()
			}
			before := sqlCounts(t, e)

			err := e.Tx(func(tx pgx.Tx) error {
				_, err := jobs.RequestProvision(ctx, tx, e.Insert, req)
				return err
			})

			require.ErrorIs(t, err, jobs.ErrInvalidInput)
			require.Contains(t, err.Error(), tt.msg)
			require.Less(t, len(err.Error()), 300, "the error must not echo a huge value")
			for _, v := range req.Env {
				if len(v) > 1 {
					require.NotContains(t, err.Error(), v, "an env value (maybe a secret) was echoed")
				}
			}
			require.Equal(t, before, sqlCounts(t, e))
		})
	}
}

func TestSQLValues_StopOfAHostileIDIsRefusedBeforeSQL(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{NoStart: true})
	before := sqlCounts(t, e)
	for _, id := range []string{sqlInjection, "\x00", strings.Repeat("f", 1<<20), "", uuid.NewString() + "'"} {
		err := e.Tx(func(tx pgx.Tx) error {
			_, err := jobs.RequestTerminate(context.Background(), tx, e.Insert, jobs.TerminateRequest{WorkspaceID: id})
			return err
		})
		require.ErrorIs(t, err, jobs.ErrInvalidInput)
		require.Less(t, len(err.Error()), 300)
	}
	require.Equal(t, before, sqlCounts(t, e))
}

func TestSQLValues_UppercaseUUIDIsTheSameWorkspace(t *testing.T) {
	t.Parallel()
	e := jobtest.New(t, jobtest.Config{NoStart: true})
	id := uuid.NewString()
	e.Provision(jobs.ProvisionRequest{WorkspaceID: strings.ToUpper(id)})

	// Postgres stores the uuid canonically: the lower-case id names the
	// same row, and a second request for either spelling finds it.
	require.Equal(t, id, e.Workspace(id).ID)
	res := e.Provision(jobs.ProvisionRequest{WorkspaceID: id})
	require.Equal(t, jobs.ActionNoop, res.Action)
}
