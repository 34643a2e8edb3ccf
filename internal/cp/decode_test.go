package cp

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// These tests pin what the CP contract (docs/design.md#cp-contract) allows
// a CP to write, each in more than
// one way: the CP is written by another team, and a correct answer that
// this client refused once left stops retrying for days.

// entry is one list entry with the given fields; an empty value leaves the
// field out.
func entry(ws, id, state, launched string) string {
	var parts []string
	for _, kv := range [][2]string{{"workspace_id", ws}, {"instance_id", id}, {"state", state}, {"launched_at", launched}} {
		if kv[1] != "" {
			parts = append(parts, `"`+kv[0]+`":"`+kv[1]+`"`)
		}
	}
	return "{" + strings.Join(parts, ",") + "}"
}

const testLaunch = "2026-01-02T03:04:05Z"

var goodEntry = entry(testWS, testInst, "running", testLaunch)

func listBody(entries ...string) string {
	return `{"instances":[` + strings.Join(entries, ",") + `],"next_cursor":""}`
}

func TestList_AcceptsEveryWellFormedPage(t *testing.T) {
	t.Parallel()
	launched := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	one := Page{Instances: []Instance{{WorkspaceID: testWS, InstanceID: testInst, State: "running", LaunchedAt: launched}}}
	tests := []struct {
		name  string
		reply reply
		want  Page
	}{
		{"empty array", reply{status: 200, body: `{"instances":[],"next_cursor":""}`}, Page{}},
		{"instances null (a Go nil slice)", reply{status: 200, body: `{"instances":null,"next_cursor":""}`}, Page{}},
		{"next_cursor absent", reply{status: 200, body: `{"instances":null}`}, Page{}},
		{"next_cursor null", reply{status: 200, body: `{"instances":[],"next_cursor":null}`}, Page{}},
		{"one entry", reply{status: 200, body: listBody(goodEntry)}, one},
		{"unknown fields ignored", reply{status: 200, body: `{"instances":[{"workspace_id":"` + testWS + `","instance_id":"` + testInst +
			`","state":"running","launched_at":"` + testLaunch + `","private_ip":null,"az":"eu-west-1a","tags":{"a":1}}],"next_cursor":null,"total":1}`}, one},
		{"fractional seconds", reply{status: 200, body: listBody(entry(testWS, testInst, "running", "2026-01-02T03:04:05.000Z"))}, one},
		{"numeric offset", reply{status: 200, body: listBody(entry(testWS, testInst, "running", "2026-01-02T04:04:05+01:00"))}, one},
		{"fraction and negative offset", reply{status: 200, body: listBody(entry(testWS, testInst, "running", "2026-01-01T21:34:05.000000-05:30"))}, one},
		{"offset without colon", reply{status: 200, body: listBody(entry(testWS, testInst, "running", "2026-01-02T04:04:05+0100"))}, one},
		{"space for the T", reply{status: 200, body: listBody(entry(testWS, testInst, "running", "2026-01-02 03:04:05Z"))}, one},
		{"lower-case t and z", reply{status: 200, body: listBody(entry(testWS, testInst, "running", "2026-01-02t03:04:05z"))}, one},
		{"upper-case workspace id", reply{status: 200, body: listBody(entry(strings.ToUpper(testWS), testInst, "running", testLaunch))}, one},
		{"no Content-Type", reply{status: 200, body: listBody(goodEntry), header: map[string]string{"Content-Type": ""}}, one},
		{"Content-Type with charset", reply{status: 200, body: listBody(goodEntry), header: map[string]string{"Content-Type": "application/json; charset=utf-8"}}, one},
		{"text/plain Content-Type", reply{status: 200, body: listBody(goodEntry), header: map[string]string{"Content-Type": "text/plain; charset=utf-8"}}, one},
		{"another 2xx", reply{status: 203, body: listBody(goodEntry)}, one},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := testClient(t, canned(tt.reply))
			page, err := c.List(context.Background(), ListOptions{})
			require.NoError(t, err)
			for i := range page.Instances {
				require.True(t, page.Instances[i].LaunchedAt.Equal(launched), "launched_at %v", page.Instances[i].LaunchedAt)
				page.Instances[i].LaunchedAt = launched // same instant; drop the zone for the comparison
			}
			require.Equal(t, tt.want, page)
		})
	}
}

func TestList_RefusesWhatTheContractRulesOut(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		opts    ListOptions
		reply   reply
		wantErr string
		unsupp  bool
	}{
		{name: "404 unsupported", reply: reply{status: 404, body: "404 page not found"}, wantErr: "status 404", unsupp: true},
		{name: "405 unsupported", reply: reply{status: 405}, wantErr: "status 405", unsupp: true},
		{name: "500", reply: reply{status: 500}, wantErr: "status 500"},
		{name: "missing instances key is not empty", reply: reply{status: 200, body: `{}`}, wantErr: "malformed list body"},
		{name: "a null body has no instances key", reply: reply{status: 200, body: `null`}, wantErr: "malformed list body"},
		{name: "empty body", reply: reply{status: 200}, wantErr: "malformed list body"},
		{name: "not JSON", reply: reply{status: 200, body: `<html>`}, wantErr: "malformed list body"},
		{name: "truncated JSON", reply: reply{status: 200, body: `{"instances":[`}, wantErr: "malformed list body"},
		{name: "instances is an object", reply: reply{status: 200, body: `{"instances":{}}`}, wantErr: "not an array"},
		{name: "instances is a string", reply: reply{status: 200, body: `{"instances":"none"}`}, wantErr: "not an array"},
		{name: "next_cursor of another type", reply: reply{status: 200, body: `{"instances":[],"next_cursor":7}`}, wantErr: "malformed list body"},
		{name: "cursor did not advance", opts: ListOptions{Cursor: "c1"}, reply: reply{status: 200, body: `{"instances":[],"next_cursor":"c1"}`}, wantErr: "did not advance"},
		{name: "filter ignored by CP", opts: ListOptions{WorkspaceID: "11111111-1c3d-4e5f-8a9b-0c1d2e3f4a5b"}, reply: reply{status: 200, body: listBody(goodEntry)}, wantErr: "ignored the workspace_id filter"},
		{name: "unreadable entry under a filter is unknown", opts: ListOptions{WorkspaceID: testWS},
			reply: reply{status: 200, body: listBody(goodEntry, entry(testWS, testInst, "running", ""))}, wantErr: "unreadable entry under a workspace filter"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := testClient(t, canned(tt.reply))
			page, err := c.List(context.Background(), tt.opts)
			require.ErrorContains(t, err, tt.wantErr)
			require.Equal(t, ClassRetry, requireCPError(t, err).Class, "unknown is retried, never empty")
			require.Equal(t, tt.unsupp, errors.Is(err, ErrListUnsupported))
			require.Equal(t, Page{}, page)
		})
	}
}

// TestList_SkipsUnreadableEntriesAndKeepsTheRest is issue 18's "one
// unreadable instance blinds the sweep": the readable entries still come
// back, the rest are reported and never acted on.
func TestList_SkipsUnreadableEntriesAndKeepsTheRest(t *testing.T) {
	t.Parallel()
	future := time.Now().Add(48 * time.Hour).UTC().Format(time.RFC3339)
	soon := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	tests := []struct {
		name   string
		entry  string
		reason string
		id     string // the skipped entry's id, when valid
		kept   int    // entries returned besides goodEntry
	}{
		{name: "no workspace tag", entry: entry("", testInst, "running", testLaunch), reason: "invalid workspace id", id: testInst},
		{name: "malformed workspace tag", entry: entry("ws-1", testInst, "running", testLaunch), reason: "invalid workspace id", id: testInst},
		{name: "malformed instance id", entry: entry(testWS, "i-1/../x", "running", testLaunch), reason: "invalid instance id"},
		{name: "no instance id", entry: entry(testWS, "", "running", testLaunch), reason: "invalid instance id"},
		{name: "no state", entry: entry(testWS, testInst, "", testLaunch), reason: "no state", id: testInst},
		{name: "no launched_at", entry: entry(testWS, testInst, "running", ""), reason: "no valid launched_at", id: testInst},
		{name: "garbage launched_at", entry: entry(testWS, testInst, "running", "yesterday"), reason: "no valid launched_at", id: testInst},
		{name: "launched_at of another type", entry: `{"workspace_id":"` + testWS + `","instance_id":"` + testInst + `","state":"running","launched_at":1767322445}`, reason: "not an instance object"},
		{name: "Go zero launched_at", entry: entry(testWS, testInst, "running", "0001-01-01T00:00:00Z"), reason: "no valid launched_at", id: testInst},
		{name: "Go zero launched_at in an offset zone", entry: entry(testWS, testInst, "running", "0000-12-31T18:30:00-05:30"), reason: "no valid launched_at", id: testInst},
		{name: "far-future launched_at", entry: entry(testWS, testInst, "running", future), reason: "more than a day in the future", id: testInst},
		{name: "near-future launched_at is clock skew, kept", entry: entry(testWS, "i-0123456789abcdef1", "running", soon), kept: 1},
		{name: "null entry", entry: `null`, reason: "invalid instance id"},
		{name: "number entry", entry: `42`, reason: "not an instance object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := testClient(t, canned(reply{status: 200, body: `{"instances":[` + goodEntry + `,` + tt.entry + `],"next_cursor":"c2"}`}))
			page, err := c.List(context.Background(), ListOptions{})
			require.NoError(t, err)
			require.Len(t, page.Instances, 1+tt.kept)
			require.Equal(t, testInst, page.Instances[0].InstanceID)
			require.Equal(t, "c2", page.NextCursor, "a skipped entry does not end the walk")
			if tt.reason == "" {
				require.Empty(t, page.Skipped)
				return
			}
			require.Len(t, page.Skipped, 1)
			require.Contains(t, page.Skipped[0].Reason, tt.reason)
			require.Equal(t, tt.id, page.Skipped[0].InstanceID)
		})
	}
}

// TestList_FutureLaunchUnderAFilterIsKept: the future bound protects the
// sweep's grace period only. Under a filter a retried provision must still
// see (and adopt) its own instance from a CP whose clock runs ahead, or it
// launches nothing, fails, and the instance the lost answer launched leaks.
func TestList_FutureLaunchUnderAFilterIsKept(t *testing.T) {
	t.Parallel()
	future := time.Now().Add(48 * time.Hour).UTC().Format(time.RFC3339)
	c, _ := testClient(t, canned(reply{status: 200, body: listBody(entry(testWS, testInst, "running", future))}))
	page, err := c.List(context.Background(), ListOptions{WorkspaceID: testWS})
	require.NoError(t, err)
	require.Len(t, page.Instances, 1)
	require.Equal(t, testInst, page.Instances[0].InstanceID)

	page, err = c.List(context.Background(), ListOptions{})
	require.NoError(t, err)
	require.Empty(t, page.Instances, "without a filter it is the sweep's, and skipped")
	require.Len(t, page.Skipped, 1)
}

func TestStart_AcceptsEveryWellFormed201(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		reply  reply
		state  string
		ip     string
		launch bool
	}{
		{name: "all fields", reply: reply{status: 201, body: `{"instance_id":"` + testInst + `","private_ip":"10.0.0.1","state":"pending","launched_at":"2026-01-02T03:04:05.5+01:00"}`}, state: "pending", ip: "10.0.0.1", launch: true},
		{name: "only the id", reply: reply{status: 201, body: `{"instance_id":"` + testInst + `"}`}},
		{name: "optional fields null", reply: reply{status: 201, body: `{"instance_id":"` + testInst + `","private_ip":null,"state":"pending","launched_at":null}`}, state: "pending"},
		{name: "optional fields of another type", reply: reply{status: 201, body: `{"instance_id":"` + testInst + `","private_ip":167772161,"state":"pending","launched_at":1767322445}`}, state: "pending"},
		{name: "unknown fields", reply: reply{status: 201, body: `{"instance_id":"` + testInst + `","state":"pending","ami":"ami-1","tags":[]}`}, state: "pending"},
		{name: "no Content-Type", reply: reply{status: 201, body: `{"instance_id":"` + testInst + `"}`, header: map[string]string{"Content-Type": ""}}},
		{name: "Content-Type with charset", reply: reply{status: 201, body: `{"instance_id":"` + testInst + `"}`, header: map[string]string{"Content-Type": "application/json; charset=utf-8"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := testClient(t, canned(tt.reply))
			inst, err := c.Start(context.Background(), provisionReq())
			require.NoError(t, err)
			require.Equal(t, testInst, inst.InstanceID)
			require.Equal(t, tt.state, inst.State)
			require.Equal(t, tt.ip, inst.PrivateIP)
			require.Equal(t, tt.launch, !inst.LaunchedAt.IsZero())
		})
	}
}

func TestStart_StillRefusesMalformed201(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		body  string
		class Class
	}{
		{"not JSON", `instance i-0123456789abcdef0 started`, ClassAmbiguous},
		{"null body has no id", `null`, ClassAmbiguous},
		{"id null", `{"instance_id":null}`, ClassAmbiguous},
		{"id of another type", `{"instance_id":12345678}`, ClassAmbiguous},
		{"state of another type", `{"instance_id":"` + testInst + `","state":1}`, ClassAmbiguous},
		{"malformed id", `{"instance_id":"I-0123456789ABCDEF0"}`, ClassPermanent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := testClient(t, canned(reply{status: 201, body: tt.body}))
			_, err := c.Start(context.Background(), provisionReq())
			require.Equal(t, tt.class, requireCPError(t, err).Class)
		})
	}
}

func TestStop_Every2xxBodyIsSuccess(t *testing.T) {
	t.Parallel()
	for _, r := range []reply{
		{status: 200, body: `{}`},
		{status: 200, body: `null`},
		{status: 200},
		{status: 200, body: `terminating`, header: map[string]string{"Content-Type": "text/plain"}},
		{status: 200, body: `{"state":"shutting-down"}`, header: map[string]string{"Content-Type": "application/json; charset=utf-8"}},
		{status: 202, body: `{"accepted":true}`},
		{status: 204},
	} {
		c, _ := testClient(t, canned(r))
		require.NoError(t, c.Stop(context.Background(), testWS, testInst), "%d %q", r.status, r.body)
	}
}

func TestStatus_DecodesEveryWellFormedAnswer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		reply reply
		state string // "" wants an error
	}{
		{"plain", reply{status: 200, body: `{"state":"running"}`}, "running"},
		{"unknown fields", reply{status: 200, body: `{"state":"stopping","instance_id":"` + testInst + `","since":null}`}, "stopping"},
		{"charset", reply{status: 200, body: `{"state":"running"}`, header: map[string]string{"Content-Type": "application/json; charset=utf-8"}}, "running"},
		{"no Content-Type", reply{status: 200, body: `{"state":"pending"}`, header: map[string]string{"Content-Type": ""}}, "pending"},
		{"state null is no answer", reply{status: 200, body: `{"state":null}`}, ""},
		{"null body is no answer", reply{status: 200, body: `null`}, ""},
		{"state of another type", reply{status: 200, body: `{"state":3}`}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := testClient(t, canned(tt.reply))
			state, err := c.Status(context.Background(), testWS, testInst)
			if tt.state == "" {
				require.Error(t, err, "an unreadable state must never read as an answer")
				running, _ := c.IsRunning(context.Background(), testWS, testInst)
				require.True(t, running, "uncertain keeps the workspace on the alive path")
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.state, state)
		})
	}
}

func TestConsole_OutputNullIsEmpty(t *testing.T) {
	t.Parallel()
	c, _ := testClient(t, canned(reply{status: 200, body: `{"output":null,"truncated":false}`}))
	out, err := c.GetConsoleOutput(context.Background(), testWS)
	require.NoError(t, err)
	require.Empty(t, out)
	c, _ = testClient(t, canned(reply{status: 200, body: `{"output":7}`}))
	_, err = c.GetConsoleOutput(context.Background(), testWS)
	require.Error(t, err)
}

func TestErrorField_NullAndOtherTypesArePlaceholders(t *testing.T) {
	t.Parallel()
	for _, body := range []string{`{"error":null}`, `{"error":{"message":"x"}}`, `null`, `{"message":"x"}`} {
		c, _ := testClient(t, canned(reply{status: http.StatusNotFound, body: body}))
		err := c.Stop(context.Background(), testWS, testInst)
		require.False(t, IsUnknownInstance(err), "%s is not the CP saying it does not know the instance", body)
		require.Contains(t, requireCPError(t, err).Message, unstructuredPrefix)
	}
}

// BenchmarkParsePage1000 is the client's share of a sweep's cost per page.
func BenchmarkParsePage1000(b *testing.B) {
	entries := make([]string, 1000)
	for i := range entries {
		entries[i] = entry(testWS, testInst, "running", testLaunch)
	}
	a := answer{status: 200, body: []byte(listBody(entries...))}
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parsePage(a, ListOptions{}, now); err != nil {
			b.Fatal(err)
		}
	}
}
