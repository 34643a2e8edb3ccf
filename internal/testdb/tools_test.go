package testdb_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/testdb"
)

// The helper a tool-dependent test calls when its tool is missing: under
// .ci/run (CI_REQUIRE_TOOLS set) the test fails, in a developer's run it
// skips. Run in a child process, since the failing case must fail.
func TestMissingTool_FailsUnderCIAndSkipsElsewhere(t *testing.T) {
	t.Parallel()
	if os.Getenv("MISSING_TOOL_CHILD") != "" {
		testdb.MissingTool(t, "no %s here", "frobnicator")
		return
	}
	for _, tc := range []struct {
		name    string
		ci      string
		wantErr bool
		want    string
	}{
		{"developer run skips", "", false, "--- SKIP"},
		{"CI run fails", "1", true, "--- FAIL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run", "^TestMissingTool_FailsUnderCIAndSkipsElsewhere$", "-test.v")
			cmd.Env = append(os.Environ(), "MISSING_TOOL_CHILD=1", testdb.RequireToolsEnv+"="+tc.ci)
			out, err := cmd.CombinedOutput()
			require.Equal(t, tc.wantErr, err != nil, string(out))
			require.True(t, strings.Contains(string(out), tc.want), string(out))
			require.Contains(t, string(out), "no frobnicator here")
		})
	}
}
