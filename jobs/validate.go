package jobs

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/molecule-ai/provision-worker/internal/cp"
	"github.com/molecule-ai/provision-worker/internal/safetext"
)

// ErrInvalidInput wraps every rejection of a request's values; callers
// map it to "bad input" (the CLI's exit 2, an HTTP 400).
var ErrInvalidInput = errors.New("invalid input")

// ErrUnknownWorkspace is returned when a stop or restart names a
// workspace that has no row.
var ErrUnknownWorkspace = errors.New("unknown workspace")

// Limits on request values. They bound what a request can make the
// worker store and send, and keep NULs (which Postgres text and jsonb
// refuse) out before they break a transaction.
const (
	MaxTier        = 4
	maxRuntimeLen  = 64
	maxURLLen      = 2048
	maxEnvEntries  = 256
	maxEnvValueLen = 32 << 10
	maxActorLen    = 128
)

var (
	runtimePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:/-]*$`)
	envKeyPattern  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)
)

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidInput, fmt.Sprintf(format, args...))
}

func validateWorkspaceID(id string) error {
	if !cp.ValidWorkspaceID(id) {
		return invalid("workspace id must be a UUID, got %q", safetext.Truncate(id, 64))
	}
	return nil
}

func (r ProvisionRequest) validate() error {
	if err := validateWorkspaceID(r.WorkspaceID); err != nil {
		return err
	}
	if r.Tier < 0 || r.Tier > MaxTier {
		return invalid("tier must be between 0 and %d, got %d", MaxTier, r.Tier)
	}
	if r.Runtime != "" && (len(r.Runtime) > maxRuntimeLen || !runtimePattern.MatchString(r.Runtime)) {
		return invalid("runtime must be 1-%d characters of letters, digits and ._:/-", maxRuntimeLen)
	}
	if r.PlatformURL != "" {
		u, err := url.Parse(r.PlatformURL)
		// Invalid UTF-8 passes url.Parse but Postgres text refuses it,
		// breaking the caller's transaction instead of answering "bad input".
		if err != nil || len(r.PlatformURL) > maxURLLen || !utf8.ValidString(r.PlatformURL) ||
			(u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return invalid("platform url must be an absolute http(s) URL of at most %d characters", maxURLLen)
		}
	}
	if err := validateActor(r.Actor); err != nil {
		return err
	}
	return validateEnv(r.Env)
}

// validateActor keeps the timeline's actor column writable: a NUL or
// invalid UTF-8 would break the caller's transaction, and an unbounded
// value would be copied into every event of the request.
func validateActor(actor string) error {
	if len(actor) > maxActorLen || !utf8.ValidString(actor) || strings.ContainsFunc(actor, notGraphic) {
		return invalid("actor must be at most %d bytes of UTF-8 without control or format characters", maxActorLen)
	}
	return nil
}

// notGraphic refuses C0/C1 controls and bidi overrides alike: the actor is
// printed on every timeline line of the request.
func notGraphic(r rune) bool { return !safetext.Graphic(r) }

func validateEnv(env map[string]string) error {
	if len(env) > maxEnvEntries {
		return invalid("at most %d env entries, got %d", maxEnvEntries, len(env))
	}
	for k, v := range env {
		if !envKeyPattern.MatchString(k) {
			return invalid("env key %q must match %s", safetext.Truncate(k, 64), envKeyPattern)
		}
		// Values are never echoed: they may be secrets. Invalid UTF-8
		// would not fail: jsonb encoding would silently store U+FFFD
		// instead of what the caller sent.
		if len(v) > maxEnvValueLen || strings.ContainsRune(v, 0) || !utf8.ValidString(v) {
			return invalid("env %s: value must be at most %d bytes of UTF-8 and hold no NUL", k, maxEnvValueLen)
		}
	}
	return nil
}
