package jobs_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/cp"
	"github.com/molecule-ai/provision-worker/internal/jobtest"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/jobs"
)

// The tests in this file run the real workers against CPs that misbehave
// on every route, and check three things per case: the job ends as
// docs/design.md#status-codes says (retried, then failed or dead; never
// read as success),
// each attempt's cost stays bounded, and no credential reaches a log
// line (ours or River's), a job's args or errors, a row, a timeline line
// or a metric label.

var hcSecrets = []string{jobtest.SharedSecret, jobtest.AdminToken, jobtest.AdminAPIKey}

// hcCase is one hostile CP behaviour, served on every route.
type hcCase struct {
	name string
	// serve answers a request; other is a second host a redirect may name.
	serve     func(w http.ResponseWriter, r *http.Request, other string)
	cpTimeout time.Duration
	// Expected outcomes for a provision and for a terminate of a recorded
	// instance (both with an attempt budget of 2).
	provState, termState rivertype.JobState
	provRow, termRow     string
	errHas               string // in the provision job's first error
}

const hcTenMB = 10 << 20

func hcBigBody(status int) func(http.ResponseWriter, *http.Request, string) {
	return func(w http.ResponseWriter, _ *http.Request, _ string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		chunk := []byte(strings.Repeat("x", 64<<10))
		_, _ = io.WriteString(w, `{"instance_id":"i-0123456789abcdef0","pad":"`)
		for sent := 0; sent < hcTenMB; sent += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return // the client hung up after its cap: what we want
			}
		}
		_, _ = io.WriteString(w, `"}`)
	}
}

func hcCanned(status int, body string) func(http.ResponseWriter, *http.Request, string) {
	return func(w http.ResponseWriter, _ *http.Request, _ string) {
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

// hcEchoHeaders is an upstream misconfiguration seen in the wild: an error
// page that dumps the request headers, bearer token included.
func hcEchoHeaders(status int) func(http.ResponseWriter, *http.Request, string) {
	return func(w http.ResponseWriter, r *http.Request, _ string) {
		w.WriteHeader(status)
		_ = r.Header.Write(w)
	}
}

// hcEchoInErrorField puts our credentials where the client does read: the
// JSON error field (an auth proxy "helpfully" quoting what it rejected).
func hcEchoInErrorField(w http.ResponseWriter, r *http.Request, _ string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	msg := "rejected " + r.Header.Get("Authorization") + " with admin token " + r.Header.Get("X-Molecule-Admin-Token")
	_, _ = fmt.Fprintf(w, `{"error":%q}`, msg)
}

func hcStall(w http.ResponseWriter, r *http.Request, _ string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_, _ = io.WriteString(w, `{"instance_id":`)
	w.(http.Flusher).Flush()
	<-r.Context().Done() // the client's timeout ends it, never us
}

func hcRedirect(w http.ResponseWriter, r *http.Request, other string) {
	// 307 keeps the method and body: Go's client would resend them, with
	// X-Molecule-Admin-Token, to the other host if it followed.
	http.Redirect(w, r, other+r.URL.RequestURI(), http.StatusTemporaryRedirect)
}

func hcCases() []hcCase {
	const fast = 300 * time.Millisecond
	return []hcCase{
		{name: "10MB body on 2xx", serve: hcBigBody(http.StatusCreated), cpTimeout: 5 * time.Second,
			provState: rivertype.JobStateDiscarded, provRow: store.StatusFailed, errHas: "response body over",
			termState: rivertype.JobStateDiscarded, termRow: store.StatusStopping},
		{name: "garbage JSON on 2xx", serve: hcCanned(http.StatusCreated, `<html>{"instance_id":`), cpTimeout: fast,
			provState: rivertype.JobStateDiscarded, provRow: store.StatusFailed, errHas: "malformed JSON in 201 body",
			// A terminate's 2xx needs no body: the CP accepted it.
			termState: rivertype.JobStateCompleted, termRow: store.StatusStopped},
		{name: "2xx without instance id", serve: hcCanned(http.StatusCreated, `{"state":"pending"}`), cpTimeout: fast,
			provState: rivertype.JobStateDiscarded, provRow: store.StatusFailed, errHas: "201 without instance id",
			termState: rivertype.JobStateCompleted, termRow: store.StatusStopped},
		{name: "500 echoing request headers", serve: hcEchoHeaders(http.StatusInternalServerError), cpTimeout: fast,
			provState: rivertype.JobStateDiscarded, provRow: store.StatusFailed, errHas: "<unstructured body",
			termState: rivertype.JobStateDiscarded, termRow: store.StatusStopping},
		{name: "400 echoing request headers", serve: hcEchoHeaders(http.StatusBadRequest), cpTimeout: fast,
			// 400 on provision is permanent: failed at once, job cancelled.
			provState: rivertype.JobStateCancelled, provRow: store.StatusFailed, errHas: "<unstructured body",
			termState: rivertype.JobStateDiscarded, termRow: store.StatusStopping},
		{name: "400 echoing credentials in its error field", serve: hcEchoInErrorField, cpTimeout: fast,
			provState: rivertype.JobStateCancelled, provRow: store.StatusFailed, errHas: "status 400",
			termState: rivertype.JobStateDiscarded, termRow: store.StatusStopping},
		{name: "headers then stall", serve: hcStall, cpTimeout: fast,
			provState: rivertype.JobStateDiscarded, provRow: store.StatusFailed, errHas: "deadline exceeded",
			termState: rivertype.JobStateDiscarded, termRow: store.StatusStopping},
		{name: "307 to another host", serve: hcRedirect, cpTimeout: fast,
			provState: rivertype.JobStateDiscarded, provRow: store.StatusFailed, errHas: "status 307",
			termState: rivertype.JobStateDiscarded, termRow: store.StatusStopping},
	}
}

// hcWorld is a jobtest.Env whose workers call a hostile CP.
type hcWorld struct {
	*jobtest.Env
	riverLogs *jobtest.SafeBuffer
	sawSecret atomic.Bool  // the hostile CP received our credentials (so echoes carry them)
	otherHits atomic.Int32 // requests that reached the redirect target
	elsewhere sync.Map     // headers the redirect target received
}

func newHCWorld(t *testing.T, c hcCase) *hcWorld {
	t.Helper()
	w := &hcWorld{riverLogs: &jobtest.SafeBuffer{}}
	riverLog := slog.New(slog.NewJSONHandler(w.riverLogs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	other := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		w.otherHits.Add(1)
		w.elsewhere.Store(r.Header.Get("Authorization")+"|"+r.Header.Get("X-Molecule-Admin-Token"), true)
	}))
	t.Cleanup(other.Close)
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "Bearer "+jobtest.SharedSecret {
			w.sawSecret.Store(true)
		}
		c.serve(rw, r, other.URL)
	}))
	t.Cleanup(srv.Close)
	hostile := func(e *jobtest.Env) cp.API {
		api, err := cp.New(cp.Config{BaseURL: srv.URL, OrgID: jobtest.OrgID, SharedSecret: jobtest.SharedSecret,
			AdminToken: jobtest.AdminToken, AdminAPIKey: jobtest.AdminAPIKey, Timeout: c.cpTimeout,
			OnRequest: e.Metrics.ObserveCP})
		require.NoError(t, err)
		return api
	}
	w.Env = jobtest.New(t, jobtest.Config{NoStart: true, CP: hostile,
		Settings: jobs.Settings{ProvisionMaxAttempts: 2, TerminateMaxAttempts: 2},
		Options:  jobs.Options{Logger: riverLog}})
	w.Start()
	return w
}

// waitFinal waits until River finalised the job (completed, cancelled or
// discarded) and returns it.
func (w *hcWorld) waitFinal(t *testing.T, jobID int64) *rivertype.JobRow {
	t.Helper()
	var job *rivertype.JobRow
	w.WaitFor(fmt.Sprintf("job %d finalised", jobID), func() bool {
		var err error
		job, err = w.Insert.JobGet(context.Background(), jobID)
		require.NoError(t, err)
		return job.FinalizedAt != nil
	})
	return job
}

// requireNoSecretAnywhere reads every place a credential could end up.
func (w *hcWorld) requireNoSecretAnywhere(t *testing.T) {
	t.Helper()
	require.True(t, w.sawSecret.Load(), "the hostile CP never saw our credentials: the echo cases would prove nothing")
	places := map[string]string{
		"worker log":    w.Logs.String(),
		"River log":     w.riverLogs.String(),
		"/metrics":      w.scrapeMetrics(t),
		"river_job":     w.dump(t, `SELECT coalesce(string_agg(j::text, E'\n'), '') FROM river_job j`),
		"workspaces":    w.dump(t, `SELECT coalesce(string_agg(x::text, E'\n'), '') FROM workspaces x`),
		"timeline":      w.dump(t, `SELECT coalesce(string_agg(x::text, E'\n'), '') FROM workspace_events x`),
		"workspace_env": w.dump(t, `SELECT coalesce(string_agg(x::text, E'\n'), '') FROM workspace_env x`),
	}
	for where, text := range places {
		for _, s := range hcSecrets {
			require.NotContains(t, text, s, "a credential reached the %s", where)
		}
	}
	require.Zero(t, w.otherHits.Load(), "a request followed a redirect to another host")
}

func (w *hcWorld) dump(t *testing.T, sql string) string {
	t.Helper()
	var s string
	require.NoError(t, w.Pool.QueryRow(context.Background(), sql).Scan(&s))
	return s
}

var hcLabel = regexp.MustCompile(`^provisioner_cp_requests_total\{code="([^"]*)",route="([^"]*)"\}`)

// scrapeMetrics returns the /metrics text and checks the CP series' label
// values are from their closed sets (a label fed from an answer would be
// an unbounded, possibly secret-bearing, series).
func (w *hcWorld) scrapeMetrics(t *testing.T) string {
	t.Helper()
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(w.Metrics.Registry, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	text := rec.Body.String()
	seen := 0
	for _, line := range strings.Split(text, "\n") {
		if m := hcLabel.FindStringSubmatch(line); m != nil {
			seen++
			require.Contains(t, []string{"2xx", "3xx", "4xx", "5xx", "error"}, m[1], line)
			require.Contains(t, []string{"provision", "terminate", "status", "console", "list"}, m[2], line)
		}
	}
	require.NotZero(t, seen, "no CP request was counted")
	return text
}

func TestHostileCP_ProvisionRetriedOrFailedAndLeaksNoSecret(t *testing.T) {
	for _, c := range hcCases() {
		t.Run(c.name, func(t *testing.T) {
			w := newHCWorld(t, c)
			id := uuid.NewString()
			start := time.Now()
			res := w.Provision(jobs.ProvisionRequest{WorkspaceID: id, Runtime: "python", Tier: 1})

			job := w.waitFinal(t, res.Job.ID)

			require.Equal(t, c.provState, job.State)
			require.NotEmpty(t, job.Errors)
			require.Contains(t, job.Errors[0].Error, c.errHas)
			ws := w.Workspace(id)
			require.Equal(t, c.provRow, ws.Status)
			require.Empty(t, ws.InstanceID, "a hostile answer was recorded as an instance")
			// Bounded: the body cap and the per-request timeout end each
			// attempt, not the 10 MB or the stall.
			require.Less(t, time.Since(start), 2*c.cpTimeout+3*time.Second)
			w.requireNoSecretAnywhere(t)
		})
	}
}

func TestHostileCP_TerminateNeverReadsFailureAsSuccessAndLeaksNoSecret(t *testing.T) {
	for _, c := range hcCases() {
		t.Run(c.name, func(t *testing.T) {
			w := newHCWorld(t, c)
			id, inst := uuid.NewString(), fmt.Sprintf("i-%017x", time.Now().UnixNano())
			_, err := w.Pool.Exec(context.Background(), `
				INSERT INTO workspaces (id, status, desired_state, instance_id, provision_nonce)
				VALUES ($1, 'running', 'running', $2, 'hc-nonce')`, id, inst)
			require.NoError(t, err)
			start := time.Now()
			res := w.Terminate(id)

			job := w.waitFinal(t, res.Job.ID)

			require.Equal(t, c.termState, job.State)
			ws := w.Workspace(id)
			require.Equal(t, c.termRow, ws.Status)
			if c.termRow == store.StatusStopping {
				// Dead, not done: the row keeps its instance for the sweep.
				require.Equal(t, inst, ws.InstanceID)
				require.Len(t, job.Errors, 2)
				require.Contains(t, eventNamesHC(t, w.Env, id), "terminate.dead")
			}
			require.Less(t, time.Since(start), 2*c.cpTimeout+3*time.Second)
			w.requireNoSecretAnywhere(t)
		})
	}
}

func eventNamesHC(t *testing.T, e *jobtest.Env, id string) []string {
	t.Helper()
	evs, err := store.MustFor("").Events(context.Background(), e.Pool, id)
	require.NoError(t, err)
	names := make([]string, 0, len(evs))
	for _, ev := range evs {
		names = append(names, ev.Event)
	}
	return names
}

// A CP can answer a well-formed instance id with junk beside it. The id is
// still an instance the CP launched: it must be owned (recorded, or handed
// to an instance_terminate) whatever the junk does to the bookkeeping
// (invariant "every instance owned", docs/design.md). A NUL in "state"
// is such junk: Postgres jsonb refuses
// \u0000, so any event that copies the state breaks its transaction.
func TestHostileCP_JunkStateBesideAValidIDStillOwnsTheInstance(t *testing.T) {
	t.Parallel()
	const inst = "i-0abc0123456789def"
	junk := func(w http.ResponseWriter, r *http.Request, _ string) {
		w.Header().Set("Content-Type", "application/json")
		if r.Method == http.MethodPost {
			w.WriteHeader(http.StatusCreated)
			_, _ = io.WriteString(w, `{"instance_id":"`+inst+`","state":"running\u0000"}`)
			return
		}
		if r.URL.Path == "/cp/workspaces" {
			ws := r.URL.Query().Get("workspace_id")
			_, _ = io.WriteString(w, `{"instances":[{"workspace_id":"`+ws+`","instance_id":"`+inst+
				`","state":"running\u0000","launched_at":"2026-01-01T00:00:00Z"}],"next_cursor":""}`)
			return
		}
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, `{"state":"terminated"}`)
	}
	w := newHCWorld(t, hcCase{serve: junk, cpTimeout: time.Second})
	id := uuid.NewString()
	res := w.Provision(jobs.ProvisionRequest{WorkspaceID: id})

	w.waitFinal(t, res.Job.ID)

	ws := w.Workspace(id)
	var handedOff int
	require.NoError(t, w.Pool.QueryRow(context.Background(), `
		SELECT count(*) FROM river_job WHERE kind = $1 AND args->>'instance_id' = $2`,
		jobs.KindInstanceTerminate, inst).Scan(&handedOff))
	require.True(t, ws.InstanceID == inst || handedOff > 0,
		"the CP launched %s and nothing owns it (row %s, last_error %q)", inst, ws.Status, ws.LastError)
	w.requireNoSecretAnywhere(t)
}
