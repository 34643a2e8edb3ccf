// Package cp is the HTTP client for the control plane (CP), the service that
// owns the cloud credentials and launches / terminates one EC2 instance per
// workspace. It holds the CP contract (docs/design.md#cp-contract) and nothing
// else: no database, no queue, no logging. Callers decide what to do with
// each outcome through the classification in errors.go.
package cp

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// DefaultBaseURL is the production CP, used when neither CP_PROVISION_URL
// nor MOLECULE_CP_URL is set.
const DefaultBaseURL = "https://api.moleculesai.app"

// DefaultTimeout bounds one CP request. It is deliberately shorter than the
// worker's River job timeouts (the reference client's 120 s outlived River's
// 1 min default, so River cancelled jobs mid-call and the answer was lost).
const DefaultTimeout = 30 * time.Second

// ErrConfig is wrapped by every configuration error from ConfigFromEnv and
// New, so a caller can tell "fix the environment" from a CP failure.
var ErrConfig = errors.New("cp: bad configuration")

// Config is what a Client needs. Build it with ConfigFromEnv, or directly in
// tests.
type Config struct {
	BaseURL      string        // CP_PROVISION_URL, else MOLECULE_CP_URL, else DefaultBaseURL
	OrgID        string        // MOLECULE_ORG_ID (required)
	SharedSecret string        // MOLECULE_CP_SHARED_SECRET, fallback PROVISION_SHARED_SECRET
	AdminToken   string        // ADMIN_TOKEN
	AdminAPIKey  string        // CP_ADMIN_API_TOKEN, fallback SharedSecret
	Timeout      time.Duration // per request; CP_TIMEOUT (Go duration), default DefaultTimeout

	// HTTPClient is optional; New builds one when nil. New works on a copy
	// whose redirects are never followed, whatever the original does.
	HTTPClient *http.Client

	// OnRequest, if set, is called after every request that reached the
	// transport (for metrics). route is one of "provision", "terminate",
	// "status", "console", "list"; status is 0 when no HTTP answer came.
	OnRequest func(route string, status int, d time.Duration)
}

// ConfigFromEnv reads the CP variables through getenv (pass os.Getenv). The
// fallbacks match the reference client so one set of env vars works on both
// sides of the wire. Errors name the variable and the expected form, never
// a secret's value.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	cfg := Config{
		BaseURL:      firstNonEmpty(getenv("CP_PROVISION_URL"), getenv("MOLECULE_CP_URL"), DefaultBaseURL),
		OrgID:        getenv("MOLECULE_ORG_ID"),
		SharedSecret: firstNonEmpty(getenv("MOLECULE_CP_SHARED_SECRET"), getenv("PROVISION_SHARED_SECRET")),
		AdminToken:   getenv("ADMIN_TOKEN"),
		Timeout:      DefaultTimeout,
	}
	// A distinct admin key keeps a leaked provision secret from reading other
	// tenants' serial consoles; dev CPs that don't split them use one secret.
	cfg.AdminAPIKey = firstNonEmpty(getenv("CP_ADMIN_API_TOKEN"), cfg.SharedSecret)
	if cfg.OrgID == "" {
		return Config{}, fmt.Errorf("%w: MOLECULE_ORG_ID is required", ErrConfig)
	}
	if err := checkBaseURL(cfg.BaseURL); err != nil {
		return Config{}, fmt.Errorf("%w: %s: %s", ErrConfig, baseURLVar(getenv), err.Error())
	}
	if s := getenv("CP_TIMEOUT"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return Config{}, fmt.Errorf("%w: CP_TIMEOUT: want a positive Go duration like 30s, got %q", ErrConfig, s)
		}
		cfg.Timeout = d
	}
	return cfg, nil
}

// baseURLVar names the variable the base URL came from, for error messages.
func baseURLVar(getenv func(string) string) string {
	if getenv("CP_PROVISION_URL") != "" {
		return "CP_PROVISION_URL"
	}
	return "MOLECULE_CP_URL"
}

// checkBaseURL accepts an absolute http(s) URL without query, fragment or
// user info. User info is refused because credentials belong in headers
// (and would otherwise show up in every transport error's URL).
func checkBaseURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.RawQuery != "" || u.Fragment != "" || u.User != nil || u.Opaque != "" {
		if err != nil {
			// url.Parse's message quotes the input, which may hold credentials.
			return errors.New("want an absolute http(s) URL, got an unparseable value")
		}
		// A token in user info or in the query must not reach the error.
		u.User, u.RawQuery, u.Fragment = nil, "", ""
		return fmt.Errorf("want an absolute http(s) URL without query or credentials, got %q", u.String())
	}
	return nil
}

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}
