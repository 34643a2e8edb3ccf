package testdb

import (
	"os"
	"testing"
)

// RequireToolsEnv is set by .ci/run: there a test whose tool (a browser,
// the Postgres server binaries) is missing fails instead of skipping, so
// a CI run cannot pass by not running it. A developer's ad-hoc run may
// still skip.
const RequireToolsEnv = "CI_REQUIRE_TOOLS"

// MissingTool skips t with the reason, or fails it when RequireToolsEnv
// is set.
func MissingTool(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv(RequireToolsEnv) != "" {
		t.Fatalf("required in CI ("+RequireToolsEnv+" is set): "+format, args...)
	}
	t.Skipf(format, args...)
}
