package cp

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// Fuzzing the decoding of everything a CP can answer. The properties are
// the contract's, not "does not crash" alone: a success carries only ids
// that are safe to put in a later URL, a malformed 2xx is never an empty
// success, and an error message is the body's error field (cleaned and
// capped) or a placeholder, never other body text.

const fuzzSecret = "fuzz-SECRET-0xbeef"

func fuzzSeeds(f *testing.F) {
	seeds := []struct {
		status int
		body   string
	}{
		{201, `{"instance_id":"i-0123456789abcdef0","private_ip":"10.0.0.1","state":"pending"}`},
		{201, `{"instance_id":"i-1/../../admin"}`},
		{201, `{"state":"pending"}`},
		{201, `<html>`},
		{201, ``},
		{200, `{"state":"running"}`},
		{200, `{"state":""}`},
		{200, `{"instances":[{"workspace_id":"0b5f4e2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b","instance_id":"i-0123456789abcdef0","state":"running","launched_at":"2026-01-01T00:00:00Z"}],"next_cursor":"c2"}`},
		{200, `{"instances":null}`},
		{200, `{"instances":[{"workspace_id":"0b5f4e2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b","instance_id":"i-0123456789abcdef0","state":"running","launched_at":"0001-01-01T00:00:00Z"}]}`},
		{200, `{"instances":[{}]}`},
		{200, `{"output":"console text"}`},
		{400, `{"error":"bad tier"}`},
		{500, `{"error":"` + strings.Repeat("e", 500) + `"}`},
		{500, `{"error":"line1\nline2\u0000<script>"}`},
		{401, "Authorization: Bearer " + fuzzSecret + "\r\n"},
		{404, `{"error":"<unstructured body, 3 bytes>"}`},
		{302, ``},
		{200, `{"instance_id":"i-0123456789abcdef0","state":"running\u0000"}`},
	}
	for _, s := range seeds {
		f.Add(s.status, []byte(s.body))
	}
}

// requireCleanMessage checks an Error's Message is a placeholder or a
// cleaned, capped error field.
func requireCleanMessage(t *testing.T, e *Error) {
	t.Helper()
	m := e.Message
	require.LessOrEqual(t, len(m), maxMessage+len("…")+len(unstructuredPrefix)+32)
	// Control characters would let a CP forge extra lines in text logs.
	require.False(t, strings.ContainsFunc(m, func(r rune) bool { return r < 0x20 || r == 0x7f }), "control character in %q", m)
}

func FuzzDecodeProvision(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		const ws = "0b5f4e2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b"
		inst, err := parseProvision(ws, body)
		if err == nil {
			require.True(t, ValidInstanceID(inst.InstanceID), "accepted id %q", inst.InstanceID)
			require.Equal(t, ws, inst.WorkspaceID)
			return
		}
		e, ok := asError(err)
		require.True(t, ok)
		require.NotEqual(t, ClassRetry, e.Class, "a garbled 201 may stand for a launched instance")
		require.NotContains(t, err.Error(), fuzzSecret)
	})
}

func FuzzDecodeListPage(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		for _, filter := range []string{"", "0b5f4e2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b"} {
			page, err := parsePage(answer{status: 200, body: body}, ListOptions{WorkspaceID: filter, Cursor: "c1"}, time.Now())
			if err != nil {
				require.NotContains(t, err.Error(), fuzzSecret)
				require.Equal(t, ClassRetry, err.(*Error).Class, "a doubtful page is unknown: retry")
				continue
			}
			require.NotEqual(t, "c1", page.NextCursor)
			for _, in := range page.Instances {
				require.True(t, ValidWorkspaceID(in.WorkspaceID))
				require.True(t, ValidInstanceID(in.InstanceID))
				require.NotEmpty(t, in.State)
				require.False(t, in.LaunchedAt.IsZero())
				require.Equal(t, strings.ToLower(in.WorkspaceID), in.WorkspaceID, "one canonical form")
				if filter != "" {
					require.True(t, strings.EqualFold(filter, in.WorkspaceID))
				}
			}
			if filter != "" {
				require.Empty(t, page.Skipped, "under a filter an unreadable entry is unknown, not skipped")
			}
		}
	})
}

func FuzzErrorAnswer(f *testing.F) {
	fuzzSeeds(f)
	c := &Client{now: time.Now}
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		for _, op := range []string{opProvision, opTerminate, opStatus, opList, opConsole} {
			e := c.failure(op, answer{status: status, header: http.Header{"Retry-After": {string(body)}}, body: body})
			requireCleanMessage(t, e)
			require.True(t, utf8.ValidString(e.Message) || !utf8.Valid(body))
			require.GreaterOrEqual(t, e.RetryAfter, time.Duration(0))
			require.LessOrEqual(t, e.RetryAfter, maxRetryAfter)
			if op != opProvision {
				require.NotEqual(t, ClassPermanent, e.Class, "%s must always retry", op)
			}
			_ = e.Error()
		}
	})
}

// FuzzClientAnswers drives the real client against a real server, so the
// transport, the body cap and the per-op decoding run together.
func FuzzClientAnswers(f *testing.F) {
	fuzzSeeds(f)
	var mu sync.Mutex    // one input at a time owns the server's answer
	var ansMu sync.Mutex // guards cur between the fuzz goroutine and the handler
	var cur struct {
		status int
		body   []byte
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		ansMu.Lock()
		status, body := cur.status, cur.body
		ansMu.Unlock()
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}))
	f.Cleanup(srv.Close)
	c, err := New(Config{BaseURL: srv.URL, OrgID: "org", SharedSecret: fuzzSecret, AdminToken: fuzzSecret + "-admin",
		AdminAPIKey: fuzzSecret + "-key", Timeout: 2 * time.Second})
	require.NoError(f, err)
	const ws, inst = "0b5f4e2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b", "i-0123456789abcdef0"
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		if status < 200 || status > 599 {
			status = 200 + (status%400+400)%400
		}
		mu.Lock()
		defer mu.Unlock()
		ansMu.Lock()
		cur.status, cur.body = status, body
		ansMu.Unlock()
		ctx := context.Background()
		_, perr := c.Start(ctx, ProvisionRequest{WorkspaceID: ws})
		state, serr := c.Status(ctx, ws, inst)
		if serr == nil {
			require.NotEmpty(t, state, "an empty state must not read as an answer")
		}
		_, lerr := c.List(ctx, ListOptions{})
		_, cerr := c.GetConsoleOutput(ctx, ws)
		terr := c.Stop(ctx, ws, inst)
		if status < 300 {
			require.NoError(t, terr, "a 2xx terminate is the CP accepting it")
		} else {
			require.Error(t, terr, "a non-2xx terminate must never read as success")
		}
		for _, err := range []error{perr, serr, lerr, cerr, terr} {
			if err == nil {
				continue
			}
			e, ok := asError(err)
			require.True(t, ok, "%T", err)
			requireCleanMessage(t, e)
			require.NotContains(t, err.Error(), srv.URL, "request URLs stay out of errors")
		}
	})
}
