package cp

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const (
	envSecret   = "envSECRETvalue789"
	envSecret2  = "p@ss word/+?&=ü" // every URL escape and a multi-byte rune
	credSecret  = "s3cret-shared"
	shortEnvVal = "eu1"
)

// echo is one shape in which a CP's error field was seen, or could
// plausibly be, to repeat a value of the request: the text, and the
// pieces of it that carry the value (computed here, independently of the
// code under test).
type echo struct {
	text      string
	forbidden []string
}

func echoes(v string) map[string]echo {
	jsonEsc, _ := json.Marshal(v)
	inner := string(jsonEsc[1 : len(jsonEsc)-1])
	b64 := func(enc *base64.Encoding, prefix, suffix string) echo {
		s := enc.EncodeToString([]byte(prefix + v + suffix))
		// Only the characters whose six bits all come from v carry it.
		from, to := (8*len(prefix)+5)/6, 8*(len(prefix)+len(v))/6
		return echo{"user-data " + s + " end", []string{s[from:to]}}
	}
	return map[string]echo{
		"raw":                 {"invalid env: MYKEY='" + v + "'", []string{v}},
		"query escaped":       {"bad url ?x=" + url.QueryEscape(v) + "&y=1", []string{url.QueryEscape(v)}},
		"path escaped":        {"no such path /" + url.PathEscape(v) + "/x", []string{url.PathEscape(v)}},
		"json escaped":        {`bad body {"env":{"K":"` + inner + `"}}`, []string{inner}},
		"base64 std":          b64(base64.StdEncoding, "", ""),
		"base64 url":          b64(base64.URLEncoding, "", ""),
		"base64 raw std":      b64(base64.RawStdEncoding, "", ""),
		"base64 raw url":      b64(base64.RawURLEncoding, "", ""),
		"base64 inside K=V":   b64(base64.StdEncoding, "MYKEY=", "\n"),
		"base64 shifted by 1": b64(base64.StdEncoding, "A=", ""),
		"base64 shifted by 2": b64(base64.RawURLEncoding, "AB=", "xyz"),
		"after 190 bytes":     {strings.Repeat("x", 190) + v, []string{v}},
		"after 10 KiB":        {strings.Repeat("[redacted]", 1<<10) + v, []string{v}},
	}
}

// leaked returns the first run of 8 bytes (or all of a shorter piece) of
// a forbidden piece that msg still holds, or "".
func leaked(msg string, forbidden []string) string {
	for _, f := range forbidden {
		n := min(8, len(f))
		for i := 0; i+n <= len(f); i++ {
			if strings.Contains(msg, f[i:i+n]) {
				return f[i : i+n]
			}
		}
	}
	return ""
}

func TestErrorField_RedactsEnvValuesAndCredentialsInEveryEncoding(t *testing.T) {
	t.Parallel()
	sec := secrets{credentials: []string{credSecret, "", "adm-TOKEN-1"},
		env: map[string]string{"MYKEY": envSecret, "OTHER": envSecret2, "REGION": shortEnvVal}}
	for _, secret := range []string{envSecret, envSecret2, credSecret} {
		for name, e := range echoes(secret) {
			t.Run(secret+" "+name, func(t *testing.T) {
				body, err := json.Marshal(map[string]string{"error": e.text})
				require.NoError(t, err)
				msg := errorField(body, sec)
				require.Empty(t, leaked(msg, e.forbidden), "message %q", msg)
				require.LessOrEqual(t, len(msg), maxMessage+len("…"))
			})
		}
	}
}

// Values under MinRedactLen bytes are left alone: redacting "eu1" would
// shred every message that mentions a region, and hides nothing.
func TestErrorField_LeavesValuesUnderMinRedactLen(t *testing.T) {
	t.Parallel()
	sec := secrets{env: map[string]string{"REGION": shortEnvVal, "FLAG": "1"}}
	msg := errorField([]byte(`{"error":"region eu1 has no capacity for tier 1"}`), sec)
	require.Equal(t, "region eu1 has no capacity for tier 1", msg)
}

// A secret that contains another is replaced whole, not around the
// shorter one (which would leave the rest of the longer secret behind).
func TestErrorField_LongestSecretWins(t *testing.T) {
	t.Parallel()
	sec := secrets{credentials: []string{"abcd"}, env: map[string]string{"K": "xxabcdyy-longer"}}
	require.Equal(t, "got [redacted] and [redacted]",
		errorField([]byte(`{"error":"got xxabcdyy-longer and abcd"}`), sec))
}

// Through the client: a provision refused with its own env value in the
// CP's error never carries the value in the returned error.
func TestStart_ErrorNeverCarriesTheRequestsEnvValues(t *testing.T) {
	t.Parallel()
	c, _ := testClient(t, func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Env map[string]string `json:"env"`
		}
		_ = json.NewDecoder(r.Body).Decode(&req)
		v := req.Env["MYKEY"]
		msg := "invalid env: MYKEY='" + v + "' (" + base64.StdEncoding.EncodeToString([]byte(v)) + ")"
		reply{status: http.StatusUnprocessableEntity, body: `{"error":` + jsonString(msg) + `}`}.serve(w)
	})
	req := provisionReq()
	req.Env = map[string]string{"MYKEY": envSecret}
	_, err := c.Start(context.Background(), req)
	require.Error(t, err)
	require.True(t, IsPermanent(err))
	require.Contains(t, err.Error(), "invalid env: MYKEY='[redacted]'")
	require.NotContains(t, err.Error(), envSecret)
	require.NotContains(t, err.Error(), base64.StdEncoding.EncodeToString([]byte(envSecret))[:8])
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// The old check was ASCII-only: C1 controls, NEL and the bidi overrides
// went into log lines, last_error and the timeline as they came.
func TestErrorField_ReplacesEveryNonGraphicRune(t *testing.T) {
	t.Parallel()
	for _, r := range []rune{'\n', 0x1b, 0x7f, 0x85, 0x9b, 0x202a, 0x202e, 0x2066, 0x2069, 0x2028, 0x200d} {
		msg := errorField([]byte(`{"error":`+jsonString("a"+string(r)+"b")+`}`), secrets{})
		require.Equal(t, "a b", msg, "%U", r)
	}
	require.Equal(t, "ünïcode ✓ stays", errorField([]byte(`{"error":"ünïcode ✓ stays"}`), secrets{}))
}
