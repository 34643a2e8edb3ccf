package jobs

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/cp"
)

// FuzzJobArgsDecode feeds River's job args column (JSON that anyone with
// database or River UI access can write) to the args types the workers
// decode. Decoding must never panic, and whatever decodes must survive a
// round trip unchanged: River re-encodes args for uniqueness and the UI.
// Note: decoding does not validate: a job with a non-UUID workspace id or
// a malformed instance id decodes fine and is caught later (the store's
// uuid column, the CP client's id checks).
func FuzzJobArgsDecode(f *testing.F) {
	for _, s := range []string{
		`{"workspace_id":"0b5f4e2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b","generation":1,"nonce":"ab12"}`,
		`{"workspace_id":"0b5f4e2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b","instance_id":"i-0123456789abcdef0"}`,
		`{"workspace_id":"x/../../admin","instance_id":"i-1?x="}`,
		`{"generation":-9223372036854775808}`, `{"generation":1e400}`, `{"generation":"1"}`,
		`{"workspace_id":"\u0000"}`, `null`, `[]`, `{`, `{"env":{"SECRET":"v"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		roundTrip(t, data, &ProvisionArgs{}, func() any { return &ProvisionArgs{} })
		roundTrip(t, data, &TerminateArgs{}, func() any { return &TerminateArgs{} })
		roundTrip(t, data, &InstanceTerminateArgs{}, func() any { return &InstanceTerminateArgs{} })
	})
}

func roundTrip(t *testing.T, data []byte, v any, fresh func() any) {
	t.Helper()
	if json.Unmarshal(data, v) != nil {
		return
	}
	b, err := json.Marshal(v)
	require.NoError(t, err)
	again := fresh()
	require.NoError(t, json.Unmarshal(b, again))
	require.Equal(t, v, again)
	// Invariant "ids-only args" (docs/design.md): nothing else survives a decode.
	var keys map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(b, &keys))
	for k := range keys {
		require.Contains(t, []string{"workspace_id", "generation", "nonce", "instance_id"}, k)
	}
}

// FuzzProvisionRequestValidate checks what validation lets through is
// storable as sent (Postgres text/jsonb refuse NUL and invalid UTF-8, and
// jsonb would rewrite the latter) and within the caps, and that a
// rejection never echoes an env value (it may be a secret).
func FuzzProvisionRequestValidate(f *testing.F) {
	f.Add("0b5f4e2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b", "python", 2, "https://p.example/x", "K", "v", "enqueue")
	f.Add("'); DROP TABLE workspaces; --", "py'thon", 5, "javascript:alert(1)", "K'", "a\x00b", "x\x00")
	f.Add("0B5F4E2A-1C3D-4E5F-8A9B-0C1D2E3F4A5B", "", -1, "https://h/\xff", "_", "\xff", "")
	f.Add("0b5f4e2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b", "a", 0, "http://[::1]:8080/", "A1", "secret-value-123", "o'brien")
	f.Fuzz(func(t *testing.T, id, runtime string, tier int, platformURL, key, value, actor string) {
		req := ProvisionRequest{WorkspaceID: id, Runtime: runtime, Tier: tier, PlatformURL: platformURL,
			Env: map[string]string{key: value}, Actor: actor}
		err := req.validate()
		if err != nil {
			require.ErrorIs(t, err, ErrInvalidInput)
			// A value that also occurs in the id, key, runtime or URL may
			// appear through them, which are fine to echo; a short one may
			// be a word of the message itself ("UUID", "must").
			others := id + "\x00" + key + "\x00" + runtime + "\x00" + platformURL + "\x00" + actor
			if len(value) >= 12 && !strings.Contains(others, value) {
				require.NotContains(t, err.Error(), value, "an env value was echoed")
			}
			require.Less(t, len(err.Error()), 400)
			return
		}
		require.True(t, cp.ValidWorkspaceID(id))
		require.True(t, tier >= 0 && tier <= MaxTier)
		for _, s := range []string{id, runtime, platformURL, key, value, actor} {
			require.True(t, utf8.ValidString(s), "accepted invalid UTF-8 %q", s)
			require.False(t, strings.ContainsRune(s, 0), "accepted a NUL in %q", s)
		}
		require.LessOrEqual(t, len(runtime), maxRuntimeLen)
		require.LessOrEqual(t, len(platformURL), maxURLLen)
		require.LessOrEqual(t, len(value), maxEnvValueLen)
	})
}
