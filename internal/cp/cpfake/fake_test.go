package cpfake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/cp"
)

const ws1 = "0b5f4e2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b"

func wsN(i int) string { return fmt.Sprintf("%08x-0000-4000-8000-000000000000", i) }

// clock is a settable fake clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func newClock() *clock { return &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

// setup starts a fake and a real cp.Client pointed at it.
func setup(t *testing.T, d Dialect, opts Options, mod ...func(*cp.Config)) (*Server, *cp.Client) {
	t.Helper()
	opts.Dialect = d
	if opts.OrgID == "" {
		opts.OrgID = "org-1"
	}
	s := Start(opts)
	t.Cleanup(s.Close)
	cfg := cp.Config{BaseURL: s.URL, OrgID: opts.OrgID, SharedSecret: opts.SharedSecret,
		AdminToken: opts.AdminToken, AdminAPIKey: opts.AdminAPIKey, Timeout: 5 * time.Second}
	for _, m := range mod {
		m(&cfg)
	}
	c, err := cp.New(cfg)
	require.NoError(t, err)
	return s, c
}

// contractTests run the real client against the fake in every dialect: a
// client that accepts only one way of writing an answer fails here.
var contractTests = []struct {
	name string
	run  func(*testing.T, Dialect)
}{
	{"Provision_SameKeyReturnsSameInstance", contractProvision_SameKeyReturnsSameInstance},
	{"Provision_IgnoreIdempotencyCountsDuplicates", contractProvision_IgnoreIdempotencyCountsDuplicates},
	{"Provision_SameKeyInFlightAnswers409", contractProvision_SameKeyInFlightAnswers409},
	{"Faults_LostAnswerActs", contractFaults_LostAnswerActs},
	{"Faults_DoNotAct", contractFaults_DoNotAct},
	{"FailNext_ScriptedAnswersThenNormal", contractFailNext_ScriptedAnswersThenNormal},
	{"Lifecycle_IsComputedFromTheClock", contractLifecycle_IsComputedFromTheClock},
	{"TerminateAndStatus_UnknownInstance", contractTerminateAndStatus_UnknownInstance},
	{"List_PagingCoversEveryInstanceExactlyOnce", contractList_PagingCoversEveryInstanceExactlyOnce},
	{"List_WorkspaceFilterLimitsAndErrors", contractList_WorkspaceFilterLimitsAndErrors},
	{"List_NoListAnswers404", contractList_NoListAnswers404},
	{"Auth_RequiresConfiguredCredentials", contractAuth_RequiresConfiguredCredentials},
	{"Console", contractConsole},
	{"RequestsAndStatsEndpoint", contractRequestsAndStatsEndpoint},
}

func TestContract(t *testing.T) {
	t.Parallel()
	for _, d := range []Dialect{DialectFull, DialectPlainGo} {
		for _, tt := range contractTests {
			t.Run(d.String()+"/"+tt.name, func(t *testing.T) { tt.run(t, d) })
		}
	}
}

func req(key string) cp.ProvisionRequest {
	return cp.ProvisionRequest{WorkspaceID: ws1, Runtime: "python", IdempotencyKey: key}
}

func contractProvision_SameKeyReturnsSameInstance(t *testing.T, d Dialect) {
	s, c := setup(t, d, Options{})
	ctx := context.Background()
	a, err := c.Start(ctx, req(ws1+":1"))
	require.NoError(t, err)
	require.Regexp(t, `^i-[0-9a-f]{17}$`, a.InstanceID)
	require.True(t, cp.ValidInstanceID(a.InstanceID))
	require.Equal(t, StateRunning, a.State)

	require.NoError(t, c.Stop(ctx, ws1, a.InstanceID))
	b, err := c.Start(ctx, req(ws1+":1"))
	require.NoError(t, err)
	require.Equal(t, a.InstanceID, b.InstanceID)
	require.Equal(t, StateTerminated, b.State, "a replay answers the instance as it is now")

	st := s.Stats()
	require.Equal(t, 1, st.Launched)
	require.Equal(t, 2, st.Provisions)
	require.Zero(t, st.Duplicates)
}

func contractProvision_IgnoreIdempotencyCountsDuplicates(t *testing.T, d Dialect) {
	s, c := setup(t, d, Options{IgnoreIdempotency: true})
	for range 3 {
		_, err := c.Start(context.Background(), req(ws1+":1"))
		require.NoError(t, err)
	}
	st := s.Stats()
	require.Equal(t, 3, st.Launched)
	require.Equal(t, 2, st.Duplicates)
	require.Equal(t, 3, st.MaxLiveForWorkspace)
	require.Len(t, s.Live(ws1), 3)
}

func contractProvision_SameKeyInFlightAnswers409(t *testing.T, d Dialect) {
	s, c := setup(t, d, Options{})
	entered, release := make(chan cp.Instance, 1), make(chan struct{})
	s.SetProvisionHook(func(ws string, inst cp.Instance) {
		entered <- inst
		<-release
	})
	done := make(chan error, 1)
	go func() { _, err := c.Start(context.Background(), req("k")); done <- err }()
	first := <-entered

	s.SetProvisionHook(nil)
	_, err := c.Start(context.Background(), req("k"))
	require.True(t, cp.IsAmbiguous(err), "%v", err)
	require.Equal(t, http.StatusConflict, cp.StatusCode(err))

	close(release)
	require.NoError(t, <-done)
	again, err := c.Start(context.Background(), req("k"))
	require.NoError(t, err)
	require.Equal(t, first.InstanceID, again.InstanceID)
	require.Equal(t, 1, s.Stats().Launched)
}

func contractFaults_LostAnswerActs(t *testing.T, d Dialect) {
	s, c := setup(t, d, Options{Faults: Faults{LostAnswer: 1}})
	_, err := c.Start(context.Background(), req("k"))
	require.True(t, cp.IsAmbiguous(err), "%v", err)
	require.Zero(t, cp.StatusCode(err))
	live := s.Live(ws1)
	require.Len(t, live, 1, "the CP launched although the answer was lost")

	err = c.Stop(context.Background(), ws1, live[0].InstanceID)
	require.Error(t, err)
	require.Empty(t, s.Live(ws1), "the terminate acted although its answer was lost")

	s.SetFaults(Faults{})
	got, err := c.Start(context.Background(), req("k"))
	require.NoError(t, err)
	require.Equal(t, live[0].InstanceID, got.InstanceID, "the retry is answered from the key")
	require.Equal(t, 2, s.Stats().FaultsInjected)
}

func contractFaults_DoNotAct(t *testing.T, d Dialect) {
	tests := []struct {
		name     string
		faults   Faults
		status   int
		deadline bool
	}{
		{"5xx", Faults{Error5xx: 1}, 503, false},
		{"reset", Faults{Reset: 1}, 0, false},
		{"timeout", Faults{Timeout: 1}, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, c := setup(t, d, Options{Faults: tt.faults}, func(cfg *cp.Config) { cfg.Timeout = 150 * time.Millisecond })
			inst := s.AddInstance(ws1, StateRunning, time.Now())
			_, err := c.Start(context.Background(), req("k"))
			require.Error(t, err)
			require.Equal(t, tt.status, cp.StatusCode(err))
			require.Equal(t, tt.deadline, errorsIsDeadline(err), "%v", err)
			require.Error(t, c.Stop(context.Background(), ws1, inst.InstanceID))
			require.Len(t, s.Live(ws1), 1, "nothing launched, nothing terminated")
			require.Zero(t, s.Stats().Launched)
			require.Equal(t, 2, s.Stats().FaultsInjected)
		})
	}
}

func errorsIsDeadline(err error) bool { return err != nil && errors.Is(err, context.DeadlineExceeded) }

func contractFailNext_ScriptedAnswersThenNormal(t *testing.T, d Dialect) {
	s, c := setup(t, d, Options{})
	inst := s.AddInstance(ws1, StateRunning, time.Now())
	s.FailNext("terminate", 500, 3)
	for range 3 {
		err := c.Stop(context.Background(), ws1, inst.InstanceID)
		require.Equal(t, 500, cp.StatusCode(err))
		require.Contains(t, err.Error(), "injected")
	}
	require.Len(t, s.Live(ws1), 1)
	require.NoError(t, c.Stop(context.Background(), ws1, inst.InstanceID))
	require.Empty(t, s.Live(ws1))
	require.Equal(t, 4, s.Stats().Terminates)
}

func contractLifecycle_IsComputedFromTheClock(t *testing.T, d Dialect) {
	clk := newClock()
	s, c := setup(t, d, Options{Now: clk.Now, BootTime: 2 * time.Second, ShutdownTime: time.Second})
	ctx := context.Background()
	inst, err := c.Start(ctx, req("k"))
	require.NoError(t, err)
	require.Equal(t, StatePending, inst.State)
	running, err := c.IsRunning(ctx, ws1, inst.InstanceID)
	require.NoError(t, err)
	require.False(t, running)

	clk.Advance(2 * time.Second)
	state, err := c.Status(ctx, ws1, inst.InstanceID)
	require.NoError(t, err)
	require.Equal(t, StateRunning, state)

	require.NoError(t, c.Stop(ctx, ws1, inst.InstanceID))
	state, _ = c.Status(ctx, ws1, inst.InstanceID)
	require.Equal(t, StateShuttingDown, state)
	require.Zero(t, s.LiveCount(), "shutting-down is not live")
	require.Empty(t, s.Live(""))

	page, err := c.List(ctx, cp.ListOptions{})
	require.NoError(t, err)
	require.Len(t, page.Instances, 1, "list includes shutting-down")

	clk.Advance(time.Second)
	state, _ = c.Status(ctx, ws1, inst.InstanceID)
	require.Equal(t, StateTerminated, state)
	require.NoError(t, c.Stop(ctx, ws1, inst.InstanceID), "terminate is idempotent")
	page, err = c.List(ctx, cp.ListOptions{})
	require.NoError(t, err)
	require.Empty(t, page.Instances, "list excludes terminated")
	require.Len(t, s.Instances(), 1)
}

func contractTerminateAndStatus_UnknownInstance(t *testing.T, d Dialect) {
	s, c := setup(t, d, Options{})
	inst := s.AddInstance(ws1, StateRunning, time.Now())
	other := wsN(7)
	tests := []struct{ name, ws, id string }{
		{"unknown id", ws1, "i-00000000000000000"},
		{"another workspace's instance", other, inst.InstanceID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := c.Stop(context.Background(), tt.ws, tt.id)
			require.True(t, cp.IsUnknownInstance(err), "%v", err)
			_, err = c.Status(context.Background(), tt.ws, tt.id)
			require.True(t, cp.IsUnknownInstance(err), "%v", err)
		})
	}
	require.Len(t, s.Live(ws1), 1)
}

func contractList_PagingCoversEveryInstanceExactlyOnce(t *testing.T, d Dialect) {
	clk := newClock()
	s, c := setup(t, d, Options{Now: clk.Now})
	want := map[string]bool{}
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 2500 {
		// Out-of-order and equal launch times exercise the (launched_at, id) order.
		at := clk.Now().Add(-time.Duration(r.IntN(500)) * time.Second)
		state := StateRunning
		if i%10 == 0 {
			state = StateTerminated
		}
		in := s.AddInstance(wsN(i%300), state, at)
		if state != StateTerminated {
			want[in.InstanceID] = true
		}
	}
	seen := map[string]bool{}
	var last cp.Instance
	cursor, pages := "", 0
	for {
		page, err := c.List(context.Background(), cp.ListOptions{Cursor: cursor, Limit: 1000})
		require.NoError(t, err)
		pages++
		for _, in := range page.Instances {
			require.False(t, seen[in.InstanceID], "listed twice: %s", in.InstanceID)
			seen[in.InstanceID] = true
			require.True(t, last.LaunchedAt.Before(in.LaunchedAt) ||
				(last.LaunchedAt.Equal(in.LaunchedAt) && last.InstanceID < in.InstanceID), "ordered")
			last = in
		}
		if pages == 1 {
			s.AddInstance(ws1, StateRunning, clk.Now().Add(time.Hour)) // launched while paging
		}
		if page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
	}
	require.Equal(t, 3, pages)
	require.Len(t, seen, len(want)+1)
	for id := range want {
		require.True(t, seen[id])
	}
}

func contractList_WorkspaceFilterLimitsAndErrors(t *testing.T, d Dialect) {
	s, c := setup(t, d, Options{})
	for i := range 5 {
		s.AddInstance(ws1, StateRunning, time.Now().Add(time.Duration(i)*time.Second))
		s.AddInstance(wsN(i), StateRunning, time.Now())
	}
	page, err := c.List(context.Background(), cp.ListOptions{WorkspaceID: ws1, Limit: 3})
	require.NoError(t, err)
	require.Len(t, page.Instances, 3)
	require.NotEmpty(t, page.NextCursor)
	page, err = c.List(context.Background(), cp.ListOptions{WorkspaceID: ws1, Cursor: page.NextCursor, Limit: 3})
	require.NoError(t, err)
	require.Len(t, page.Instances, 2)
	require.Empty(t, page.NextCursor)

	_, err = c.List(context.Background(), cp.ListOptions{Cursor: "!!"})
	require.Equal(t, 400, cp.StatusCode(err))
}

func contractList_NoListAnswers404(t *testing.T, d Dialect) {
	_, c := setup(t, d, Options{NoList: true})
	_, err := c.List(context.Background(), cp.ListOptions{})
	require.ErrorIs(t, err, cp.ErrListUnsupported)
}

func contractAuth_RequiresConfiguredCredentials(t *testing.T, d Dialect) {
	opts := Options{SharedSecret: "s", AdminToken: "t", AdminAPIKey: "k"}
	_, good := setup(t, d, opts)
	_, err := good.Start(context.Background(), req(""))
	require.NoError(t, err)
	_, err = good.GetConsoleOutput(context.Background(), ws1)
	require.NoError(t, err)

	tests := []struct {
		name string
		mod  func(*cp.Config)
	}{
		{"no secret", func(c *cp.Config) { c.SharedSecret = "" }},
		{"wrong token", func(c *cp.Config) { c.AdminToken = "x" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, c := setup(t, d, opts, tt.mod)
			_, err := c.Start(context.Background(), req(""))
			require.True(t, cp.IsAuth(err), "%v", err)
			require.Zero(t, s.Stats().Launched)
		})
	}
	t.Run("admin route wants the admin key", func(t *testing.T) {
		_, c := setup(t, d, opts, func(c *cp.Config) { c.AdminAPIKey = "s" })
		_, err := c.GetConsoleOutput(context.Background(), ws1)
		require.True(t, cp.IsAuth(err), "%v", err)
	})
}

func contractConsole(t *testing.T, d Dialect) {
	_, c := setup(t, d, Options{})
	out, err := c.GetConsoleOutput(context.Background(), ws1)
	require.NoError(t, err)
	require.Equal(t, "console for "+ws1, out)
}

func contractRequestsAndStatsEndpoint(t *testing.T, d Dialect) {
	var served []Served
	var mu sync.Mutex
	s, c := setup(t, d, Options{SharedSecret: "s", OnServe: func(x Served) { mu.Lock(); served = append(served, x); mu.Unlock() }})
	inst, err := c.Start(context.Background(), req("k"))
	require.NoError(t, err)
	_, err = c.Status(context.Background(), ws1, inst.InstanceID)
	require.NoError(t, err)

	reqs := s.Requests()
	require.Len(t, reqs, 2)
	require.Equal(t, "provision", reqs[0].Route)
	require.Equal(t, "k", reqs[0].Header.Get("Idempotency-Key"))
	require.Contains(t, string(reqs[0].Body), `"org_id":"org-1"`)
	require.Equal(t, "instance_id="+inst.InstanceID, reqs[1].Query)

	mu.Lock()
	require.Equal(t, Served{Method: "GET", Route: "status", Status: 200, WorkspaceID: ws1, InstanceID: inst.InstanceID},
		withoutDuration(served[1]))
	mu.Unlock()

	resp, err := http.Get(s.URL + "/fake/stats")
	require.NoError(t, err)
	defer resp.Body.Close()
	var got map[string]int
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&got))
	require.Equal(t, 1, got["provisions"])
	require.Equal(t, 1, got["statuses"])
	require.Equal(t, 1, got["live"])
}

func withoutDuration(s Served) Served { s.Duration = 0; return s }

// TestList_100kInstancesPageCompletely walks a large fleet. Its speed is a
// benchmark's business (BenchmarkList1000Of100k, make bench's sweep): a
// wall-clock bound here failed on a loaded CI machine.
func TestList_100kInstancesPageCompletely(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("seeds 100k instances")
	}
	s, c := setup(t, DialectFull, Options{})
	base := time.Now().Add(-time.Hour)
	for i := range 100_000 {
		s.AddInstance(wsN(i), StateRunning, base.Add(time.Duration(i)*time.Millisecond))
	}
	n, cursor := 0, ""
	for {
		page, err := c.List(context.Background(), cp.ListOptions{Cursor: cursor, Limit: 1000})
		require.NoError(t, err)
		n += len(page.Instances)
		if cursor = page.NextCursor; cursor == "" {
			break
		}
	}
	require.Equal(t, 100_000, n)
	require.Equal(t, 100_000, s.LiveCount())
}

func BenchmarkList1000Of100k(b *testing.B) {
	f := New(Options{})
	base := time.Now().Add(-time.Hour)
	for i := range 100_000 {
		f.AddInstance(wsN(i), StateRunning, base.Add(time.Duration(i)*time.Millisecond))
	}
	b.ResetTimer()
	for b.Loop() {
		f.mu.Lock()
		_, _, err := f.pageLocked("", "", 1000)
		f.mu.Unlock()
		if err != nil {
			b.Fatal(err)
		}
	}
}

// TestDialectPlainGo_WritesWhatAGoServerWrites pins the plain dialect's
// bytes, so it cannot quietly drift back to the full one and stop testing
// the client against null lists, 204s and missing fields.
func TestDialectPlainGo_WritesWhatAGoServerWrites(t *testing.T) {
	t.Parallel()
	s, c := setup(t, DialectPlainGo, Options{})
	get := func(method, path string, body string) (*http.Response, string) {
		req, err := http.NewRequest(method, s.URL+path, strings.NewReader(body))
		require.NoError(t, err)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp, string(b)
	}
	resp, body := get(http.MethodGet, "/cp/workspaces?org_id=org-1", "")
	require.Equal(t, "{\"instances\":null}\n", body)
	require.NotEqual(t, "application/json", resp.Header.Get("Content-Type"))

	resp, body = get(http.MethodPost, "/cp/workspaces/provision", `{"org_id":"org-1","workspace_id":"`+ws1+`"}`)
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	require.NotContains(t, body, "private_ip")
	require.NotContains(t, body, "launched_at")
	inst, err := c.Start(context.Background(), req(""))
	require.NoError(t, err)

	_, body = get(http.MethodGet, "/cp/workspaces?org_id=org-1", "")
	require.Regexp(t, `"launched_at":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d-05:30"`, body)
	require.NotContains(t, body, "next_cursor")

	resp, body = get(http.MethodDelete, "/cp/workspaces/"+ws1+"?instance_id="+inst.InstanceID, "")
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	require.Empty(t, body)
}
