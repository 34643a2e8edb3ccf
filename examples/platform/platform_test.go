package main_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/jobs"

	"example.com/platform/api"
)

// settle is how long a flow may take to converge in these tests: pickup,
// a CP call or two with fast retries, and after a SIGKILL River's rescue
// of the dead process's running jobs (its rescuer looks every 30 s).
const settle = 2 * time.Minute

func newID(i int) string {
	return fmt.Sprintf("%08x-0000-4000-8000-%012x", time.Now().UnixNano()&0xffffffff, i)
}

// liveAt is the CP's view of ws: its instances not yet terminated.
func liveAt(all []cpInstance, ws string) []cpInstance {
	var out []cpInstance
	for _, in := range all {
		if strings.EqualFold(in.WorkspaceID, ws) {
			out = append(out, in)
		}
	}
	return out
}

// online waits until every id's host row is online with the one instance
// the CP runs for it.
func (h *harness) online(ids ...string) {
	h.t.Helper()
	h.eventually("workspaces online", settle, func() (bool, string) {
		all := h.cpInstances()
		for _, id := range ids {
			ws := h.row(id)
			if ws.Status != "online" || ws.InstanceID == "" {
				return false, fmt.Sprintf("%s is %s", id, ws.Status)
			}
			live := liveAt(all, id)
			if len(live) != 1 || live[0].InstanceID != ws.InstanceID {
				return false, fmt.Sprintf("%s: host says %s, CP has %v", id, ws.InstanceID, live)
			}
		}
		return true, ""
	})
}

// removed waits until every id's host row is removed with no instance id
// and the CP holds no instance of it at all.
func (h *harness) removed(ids ...string) {
	h.t.Helper()
	h.eventually("workspaces removed and their instances gone", settle, func() (bool, string) {
		all := h.cpInstances()
		for _, id := range ids {
			ws := h.row(id)
			if ws.Status != "removed" || ws.InstanceID != "" {
				return false, fmt.Sprintf("%s is %s holding %q", id, ws.Status, ws.InstanceID)
			}
			if live := liveAt(all, id); len(live) > 0 {
				return false, fmt.Sprintf("%s still has %v at the CP", id, live)
			}
		}
		return true, ""
	})
}

// A tree of three is created through the API, each provisioned with its
// secrets decrypted at call time; deleting the root removes all three
// rows and terminates all three instances.
func TestPlatform_DeleteTreeStopsEveryInstance(t *testing.T) {
	h := newHarness(t)
	p, base := h.startPlatform()
	for _, path := range []string{"/readyz", "/metrics", "/riverui/"} {
		resp, err := http.Get(base + path)
		require.NoError(t, err)
		_ = resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, "the worker's %s on the host's listener", path)
	}
	root, child, grand := newID(1), newID(2), newID(3)
	secret := map[string]string{"API_KEY": secretMark + "-tree"}
	h.create(base, api.CreateRequest{ID: root, Secrets: secret})
	h.create(base, api.CreateRequest{ID: child, ParentID: root, Secrets: secret})
	h.create(base, api.CreateRequest{ID: grand, ParentID: child})
	h.online(root, child, grand)
	require.Equal(t, secret, h.proxy.Env(root), "the CP got the env the hook decrypted")
	require.Equal(t, secret, h.proxy.Env(child))
	require.Empty(t, h.proxy.Env(grand))

	// A restart stops the old instance and launches a new one; the host's
	// row follows through provisioning (its old id cleared) to online.
	before := h.row(child).InstanceID
	h.restart(base, child)
	h.eventually("the restarted workspace runs a new instance", settle, func() (bool, string) {
		ws := h.row(child)
		return ws.Status == "online" && ws.InstanceID != before, ws.Status + " " + ws.InstanceID
	})
	h.online(child)
	require.Equal(t, secret, h.proxy.Env(child), "the restart's provision got the env from the hook again")

	require.Equal(t, []string{root, child, grand}, h.delete(base, root))
	h.removed(root, child, grand)
	require.Equal(t, 0, p.Stop(t), "SIGTERM shuts down cleanly")
}

// A provision the CP rejects for good leaves the host row failed with the
// generic message only: the CP's text (AMI and VPC ids) never reaches it.
func TestPlatform_RejectedProvisionFailsWithTheGenericMessage(t *testing.T) {
	h := newHarness(t)
	_, base := h.startPlatform()
	bad, good := newID(1), newID(2)
	h.create(base, api.CreateRequest{ID: bad, Runtime: rejectRuntime, Secrets: map[string]string{"K": secretMark}})
	h.create(base, api.CreateRequest{ID: good})
	h.eventually("the rejected workspace failed", settle, func() (bool, string) {
		ws := h.row(bad)
		return ws.Status == "failed", ws.Status
	})
	ws := h.row(bad)
	require.Equal(t, jobs.GenericFailure, ws.LastSampleError)
	require.Empty(t, ws.InstanceID)
	require.NotNil(t, h.proxy.Env(bad), "the CP was really asked")
	var n int
	require.NoError(t, h.db.QueryRow(`SELECT count(*) FROM public.workspaces WHERE last_sample_error LIKE '%ami-%'`).Scan(&n))
	require.Zero(t, n)
	h.online(good)
	require.Empty(t, liveAt(h.cpInstances(), bad))
}

// The platform is SIGKILLed while provisions and terminates are in flight
// at the CP (which then acts: the answers are lost). After a restart
// everything converges and nothing leaks: every instance the CP runs
// belongs to a workspace the host shows online with that very instance,
// and none is left for a removed one.
func TestPlatform_SIGKILLMidFlowConvergesWithNothingLeaked(t *testing.T) {
	h := newHarness(t)
	p1, base := h.startPlatform()
	a0, a1, a2 := newID(1), newID(2), newID(3)
	h.create(base, api.CreateRequest{ID: a0})
	h.create(base, api.CreateRequest{ID: a1, ParentID: a0})
	h.create(base, api.CreateRequest{ID: a2, ParentID: a0})
	h.online(a0, a1, a2)

	b1, b2 := newID(4), newID(5)
	doomed := map[string]bool{a0: true, a1: true, a2: true}
	fresh := map[string]bool{b1: true, b2: true}
	arrived := h.proxy.Hold(func(route, ws string) bool {
		return (route == routeProv && fresh[ws]) || (route == routeTerm && doomed[ws])
	})
	h.create(base, api.CreateRequest{ID: b1, Secrets: map[string]string{"K": secretMark}})
	h.create(base, api.CreateRequest{ID: b2})
	h.delete(base, a0)
	var seen []string
	for len(seen) < 5 {
		select {
		case s := <-arrived:
			seen = append(seen, s)
		case <-time.After(settle):
			t.Fatalf("only %v reached the CP", seen)
		}
	}
	p1.Kill(t)
	h.proxy.Release()
	require.NotEmpty(t, h.proxy.Launched(b1), "the CP launched while the platform was dead")

	p2, _ := h.startPlatform()
	h.online(b1, b2)
	h.removed(a0, a1, a2)
	all := h.cpInstances()
	var got, want []string
	for _, in := range all {
		got = append(got, in.InstanceID)
		ws := h.row(in.WorkspaceID)
		require.Equal(t, "online", ws.Status, "instance %s belongs to a workspace the host shows %s", in.InstanceID, ws.Status)
		require.Equal(t, in.InstanceID, ws.InstanceID)
	}
	for _, id := range []string{b1, b2} {
		want = append(want, h.row(id).InstanceID)
	}
	sort.Strings(got)
	sort.Strings(want)
	require.Equal(t, want, got, "exactly the online workspaces' instances run")
	require.Equal(t, h.proxy.Launched(b1), h.row(b1).InstanceID, "the instance launched during the crash was adopted, not relaunched")
	require.Equal(t, 0, p2.Stop(t))
}

type sweepReport struct {
	LiveInstances int            `json:"live_instances"`
	Orphans       map[string]int `json:"orphans"`
	Enqueued      int            `json:"enqueued"`
	SkippedYoung  int            `json:"skipped_young"`
	BreakerOpen   bool           `json:"breaker_open"`
	CPSide        string         `json:"cp_side"`
}

func (h *harness) sweep(args ...string) sweepReport {
	h.t.Helper()
	out := h.run(h.bins+"/enqueue", append([]string{"sweep", "--wait", "--wait-timeout", "1m"}, args...)...)
	var r sweepReport
	require.NoError(h.t, json.Unmarshal([]byte(out), &r), out)
	return r
}

type importReport struct {
	Created, Unchanged, Refused int
	Stops                       []string `json:"stops"`
	Owned                       []string `json:"owned"`
}

func (h *harness) importRows(args ...string) importReport {
	h.t.Helper()
	out := h.run(buildPlatform(h.t), append([]string{"import"}, args...)...)
	var r importReport
	require.NoError(h.t, json.Unmarshal([]byte(out), &r), out)
	return r
}

// Cutover onto a live fleet: instances the host launched before the
// worker existed are imported from its rows, then a sweep (and even a
// forced one) terminates none of them. A removed row still holding an
// instance (the old polling loop's pending stop) is handed over as a
// terminate and ends with its instance gone.
func TestPlatform_ImportThenSweepTerminatesNoneOfTheFleet(t *testing.T) {
	h := newHarness(t)
	h.run(buildPlatform(t), "migrate")
	fleet := map[string]string{}
	for i := range 5 {
		id := newID(i)
		fleet[id] = h.cpLaunch(id)
		_, err := h.db.Exec(`INSERT INTO public.workspaces (id, name, tier, runtime, status, instance_id)
			VALUES ($1, 'legacy', 1, 'python', 'online', $2)`, id, fleet[id])
		require.NoError(t, err)
	}
	gone := newID(9)
	_, err := h.db.Exec(`INSERT INTO public.workspaces (id, name, tier, runtime, status, instance_id)
		VALUES ($1, 'legacy-removed', 1, 'python', 'removed', $2)`, gone, h.cpLaunch(gone))
	require.NoError(t, err)

	dry := h.importRows("--dry-run")
	require.Equal(t, importReport{Created: 6, Stops: []string{gone}, Owned: []string{}}, dry)
	_, err = jobs.GetWorkspace(t.Context(), jobs.SQLDB(h.db), "", gone)
	require.ErrorIs(t, err, jobs.ErrUnknownWorkspace, "a dry run writes nothing")
	require.Equal(t, importReport{Created: 6, Stops: []string{gone}, Owned: []string{}}, h.importRows())
	// A re-run changes nothing: the fleet is unchanged, the handed-over
	// stop is the worker's own now.
	require.Equal(t, importReport{Unchanged: 5, Stops: []string{}, Owned: []string{gone}}, h.importRows())

	_, _ = h.startPlatform()
	h.removed(gone)
	var r sweepReport
	h.eventually("a sweep old enough to judge the whole fleet", settle, func() (bool, string) {
		r = h.sweep()
		return r.SkippedYoung == 0, fmt.Sprintf("%+v", r)
	})
	require.False(t, r.BreakerOpen, "%+v", r)
	require.Equal(t, "ok", strings.ToLower(r.CPSide), "%+v", r)
	require.Equal(t, 0, r.Enqueued, "%+v", r)
	for kind, n := range r.Orphans {
		require.Zero(t, n, "orphans of kind %s: %+v", kind, r)
	}
	require.Equal(t, 5, r.LiveInstances)
	forced := h.sweep("--force")
	require.Equal(t, 0, forced.Enqueued, "%+v", forced)

	all := h.cpInstances()
	require.Len(t, all, 5)
	for id, inst := range fleet {
		live := liveAt(all, id)
		require.Len(t, live, 1)
		require.Equal(t, inst, live[0].InstanceID)
		require.Equal(t, "online", h.row(id).Status)
		ws, err := jobs.GetWorkspace(t.Context(), jobs.SQLDB(h.db), "", id)
		require.NoError(t, err)
		require.Equal(t, jobs.StatusRunning, ws.Status)
		require.Equal(t, inst, ws.InstanceID)
	}
}
