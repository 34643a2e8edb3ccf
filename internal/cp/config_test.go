package cp

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestConfigFromEnv_Fallbacks(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		want Config
	}{
		{
			name: "defaults",
			env:  map[string]string{"MOLECULE_ORG_ID": "org"},
			want: Config{BaseURL: DefaultBaseURL, OrgID: "org", Timeout: DefaultTimeout},
		},
		{
			name: "MOLECULE_CP_URL when CP_PROVISION_URL unset",
			env:  map[string]string{"MOLECULE_ORG_ID": "org", "MOLECULE_CP_URL": "http://cp.local:9"},
			want: Config{BaseURL: "http://cp.local:9", OrgID: "org", Timeout: DefaultTimeout},
		},
		{
			name: "CP_PROVISION_URL wins",
			env: map[string]string{"MOLECULE_ORG_ID": "org", "MOLECULE_CP_URL": "http://b",
				"CP_PROVISION_URL": "https://a/base"},
			want: Config{BaseURL: "https://a/base", OrgID: "org", Timeout: DefaultTimeout},
		},
		{
			name: "PROVISION_SHARED_SECRET fallback also feeds the admin key",
			env:  map[string]string{"MOLECULE_ORG_ID": "org", "PROVISION_SHARED_SECRET": "s2", "ADMIN_TOKEN": "at"},
			want: Config{BaseURL: DefaultBaseURL, OrgID: "org", SharedSecret: "s2", AdminAPIKey: "s2",
				AdminToken: "at", Timeout: DefaultTimeout},
		},
		{
			name: "explicit secrets win over fallbacks",
			env: map[string]string{"MOLECULE_ORG_ID": "org", "PROVISION_SHARED_SECRET": "s2",
				"MOLECULE_CP_SHARED_SECRET": "s1", "CP_ADMIN_API_TOKEN": "ak", "CP_TIMEOUT": "5s"},
			want: Config{BaseURL: DefaultBaseURL, OrgID: "org", SharedSecret: "s1", AdminAPIKey: "ak",
				Timeout: 5 * time.Second},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ConfigFromEnv(envOf(tt.env))
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestConfigFromEnv_ErrorsNameTheVariableNotTheSecret(t *testing.T) {
	t.Parallel()
	base := map[string]string{"MOLECULE_ORG_ID": "org", "MOLECULE_CP_SHARED_SECRET": "sekrit"}
	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for kk, vv := range base {
			m[kk] = vv
		}
		m[k] = v
		return m
	}
	tests := []struct {
		name, wantIn string
		env          map[string]string
	}{
		{"missing org", "MOLECULE_ORG_ID is required", with("MOLECULE_ORG_ID", "")},
		{"relative url", `CP_PROVISION_URL: want an absolute http(s) URL`, with("CP_PROVISION_URL", "/cp")},
		{"ftp url", `CP_PROVISION_URL: want an absolute http(s) URL`, with("CP_PROVISION_URL", "ftp://x")},
		{"query in url", `CP_PROVISION_URL: want`, with("CP_PROVISION_URL", "http://x/?a=b")},
		{"bad fallback url", `MOLECULE_CP_URL: want`, with("MOLECULE_CP_URL", "nope")},
		{"token in url", `CP_PROVISION_URL: want`, with("CP_PROVISION_URL", "https://sekrit@cp/")},
		{"token in unparseable url", `CP_PROVISION_URL: want`, with("CP_PROVISION_URL", "http://sekrit@[::1")},
		{"bad timeout", "CP_TIMEOUT: want a positive Go duration like 30s", with("CP_TIMEOUT", "30")},
		{"negative timeout", "CP_TIMEOUT", with("CP_TIMEOUT", "-1s")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ConfigFromEnv(envOf(tt.env))
			require.ErrorIs(t, err, ErrConfig)
			require.Contains(t, err.Error(), tt.wantIn)
			require.NotContains(t, err.Error(), "sekrit")
		})
	}
}

func TestNew_Validates(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"ok", Config{BaseURL: "http://127.0.0.1:1", OrgID: "o"}, true},
		{"no org", Config{BaseURL: "http://127.0.0.1:1"}, false},
		{"no url", Config{OrgID: "o"}, false},
		{"query", Config{BaseURL: "http://h/?x=1", OrgID: "o"}, false},
		{"fragment", Config{BaseURL: "http://h/#x", OrgID: "o"}, false},
		{"negative timeout", Config{BaseURL: "http://h", OrgID: "o", Timeout: -time.Second}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(tt.cfg)
			if tt.ok {
				require.NoError(t, err)
				require.Equal(t, DefaultTimeout, c.Timeout())
				require.Equal(t, "o", c.OrgID())
				return
			}
			require.True(t, errors.Is(err, ErrConfig), "got %v", err)
		})
	}
}

func TestValidIDs(t *testing.T) {
	t.Parallel()
	ws := []struct {
		in string
		ok bool
	}{
		{"0b5f4e2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b", true},
		{"0B5F4E2A-1C3D-4E5F-8A9B-0C1D2E3F4A5B", true},
		{"0b5f4e2a1c3d4e5f8a9b0c1d2e3f4a5b", false},
		{"0b5f4e2a-1c3d-4e5f-8a9b-0c1d2e3f4a5", false},
		{"0b5f4e2a-1c3d-4e5f-8a9b-0c1d2e3f4a5g", false},
		{"../../admin/x-1c3d-4e5f-8a9b-0c1d2e3f", false},
		{"", false},
	}
	for _, tt := range ws {
		require.Equal(t, tt.ok, ValidWorkspaceID(tt.in), tt.in)
	}
	inst := []struct {
		in string
		ok bool
	}{
		{"i-0123abcd", true},
		{"i-0123456789abcdef0", true},
		{"i-0123456789abcdef01", false},
		{"i-0123abc", false},
		{"i-0123ABCD", false},
		{"i-1/../../admin", false},
		{"i-1?x=", false},
		{"i-0123abcd ", false},
		{"x-0123abcd", false},
		{"", false},
	}
	for _, tt := range inst {
		require.Equal(t, tt.ok, ValidInstanceID(tt.in), tt.in)
	}
}
