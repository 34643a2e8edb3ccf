package chaos

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/cp/cpfake"
)

var (
	chaosN     = flag.Int("chaos.n", 200, "workspaces the chaos test provisions and terminates")
	chaosKills = flag.Int("chaos.kills", 0, "SIGKILLs during the chaos test (0: max(10, n/50))")
	chaosSeed  = flag.Int64("chaos.seed", 0, "seed for faults and kill timing (0: from the clock, printed)")
)

// chaosFaults are the fake CP's fault shares: every kind the CP contract
// says a worker must survive, including "acted but the answer was lost".
var chaosFaults = cpfake.Faults{Error5xx: 0.05, Timeout: 0.01, Reset: 0.03, LostAnswer: 0.05}

// TestChaos provisions and then terminates N workspaces through the
// enqueue binary while three worker processes are SIGKILLed at random
// moments and restarted, against a CP that fails, stalls, resets and
// loses answers. After the queue drains nothing may run, every row must be
// stopped, no job discarded, and no workspace may ever have had two live
// instances. It pins, together: the idempotency key and adoption before a
// retried launch (duplicates), instance ownership in the completing
// transaction (leaked), and the terminate's retry-until-confirmed (lost).
// It runs once per fake dialect: against a CP that writes empty lists as
// null and terminates as 204 too, since the real CP is written by another
// team. The second run's fleet mixes the two forms of the worker: one
// cmd/worker and two host processes embedding package provisioner
// (internal/chaos/cmd/embedhost), killed and restarted alike, so every
// guarantee holds for the embedded form and for a fleet mid-migration
// from one form to the other, at no extra run time.
func TestChaos(t *testing.T) {
	command := []form{formCommand, formCommand, formCommand}
	mixed := []form{formCommand, formEmbedded, formEmbedded}
	for _, run := range []struct {
		dialect cpfake.Dialect
		forms   []form
	}{{cpfake.DialectFull, command}, {cpfake.DialectPlainGo, mixed}} {
		t.Run(run.dialect.String(), func(t *testing.T) { runChaos(t, run.dialect, run.forms) })
	}
}

func runChaos(t *testing.T, dialect cpfake.Dialect, forms []form) {
	n := *chaosN
	kills := *chaosKills
	if kills <= 0 {
		kills = max(10, n/50)
	}
	seed := *chaosSeed
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	t.Logf("chaos: dialect=%s seed=%d (rerun with -chaos.seed=%d)", dialect, seed, seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 7))
	w := newWorld(t, cpfake.Options{Faults: chaosFaults, Seed: seed, Dialect: dialect}, nil)

	procs := make([]*workerProc, len(forms))
	for i, f := range forms {
		procs[i] = w.startForm(fmt.Sprintf("chaos-w%d", i), f)
	}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = uuid.NewString()
	}

	killed := make(chan killCount, 1)
	stopKiller := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		killed <- killer(w, procs, kills, rng.Int64(), stopKiller)
	}()

	started := time.Now()
	w.enqueueAll("provision", ids, 6)
	rng.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	w.enqueueAll("terminate", ids, 6)
	wg.Wait()
	ks := <-killed
	k := ks.total()
	close(stopKiller)
	t.Logf("chaos: enqueued %d provisions and terminates, %d kills, in %s", n, k, time.Since(started).Round(time.Millisecond))

	_, drainErr := w.drain(drainLimit(t, n))
	report := w.account(ids)
	line := fmt.Sprintf("chaos: dialect=%s forms=%s workspaces=%d kills=%d (embedded %d) cp_faults=%d leaked=%d duplicates=%d lost=%d",
		dialect, formList(forms), n, k, ks[formEmbedded], w.cp.Stats().FaultsInjected, report.leaked, report.duplicates, report.lost)
	t.Log(line)
	fmt.Println(line)
	if drainErr != nil || !report.clean() {
		report.explain(t)
	}
	require.NoError(t, drainErr)
	require.GreaterOrEqual(t, k, kills)
	if slices.Contains(forms, formEmbedded) {
		require.Positive(t, ks[formEmbedded], "no embedded worker was killed")
	}
	require.Zero(t, report.leaked, "instances still live, or rows still holding one")
	require.Zero(t, report.duplicates, "a workspace had two live instances")
	require.Zero(t, report.lost, "an accepted terminate did not finish")
	require.Zero(t, report.discarded, "jobs discarded")
	require.LessOrEqual(t, w.cp.Stats().MaxLiveForWorkspace, 1)

	for _, p := range procs {
		code, err := p.terminate(30 * time.Second)
		require.NoError(t, err)
		require.Equal(t, 0, code, "%s exit code after SIGTERM", p.name)
	}
}

// killCount counts SIGKILLs by the form of the process killed.
type killCount [2]int

func (k killCount) total() int { return k[formCommand] + k[formEmbedded] }

func formList(forms []form) string {
	s := make([]string, len(forms))
	for i, f := range forms {
		s[i] = f.String()
	}
	return strings.Join(s, ",")
}

// killer SIGKILLs a random worker every 100-900 ms and restarts it, n
// times, then keeps all of them running. It returns the kills done.
func killer(w *world, procs []*workerProc, n int, seed int64, stop <-chan struct{}) killCount {
	rng := rand.New(rand.NewPCG(uint64(seed), 11))
	var done killCount
	for done.total() < n {
		select {
		case <-stop:
			return done
		case <-time.After(time.Duration(100+rng.IntN(800)) * time.Millisecond):
		}
		p := procs[rng.IntN(len(procs))]
		p.kill()
		done[p.form]++
		// Sometimes stay down a while, so the others work alone and the
		// dead one's jobs wait for the rescuer.
		if rng.IntN(3) == 0 {
			time.Sleep(time.Duration(rng.IntN(500)) * time.Millisecond)
		}
		w.launch(p)
	}
	return done
}

// drainLimit scales with N and stays inside the test's deadline.
func drainLimit(t *testing.T, n int) time.Duration {
	limit := 3*time.Minute + time.Duration(n)*100*time.Millisecond
	if d, ok := t.Deadline(); ok {
		limit = min(limit, time.Until(d)-30*time.Second)
	}
	return limit
}

// chaosReport is the leak accounting of one run.
type chaosReport struct {
	leaked, duplicates, lost, discarded int
	badRows                             []string
	w                                   *world
}

func (r chaosReport) clean() bool {
	return r.leaked == 0 && r.duplicates == 0 && r.lost == 0 && r.discarded == 0
}

// account counts leaked instances (live in the CP, or still recorded on a
// row), duplicate launches, and lost stops (rows not stopped, or whose
// jobs were discarded).
func (w *world) account(ids []string) chaosReport {
	ctx := context.Background()
	r := chaosReport{w: w, duplicates: w.cp.Stats().Duplicates}
	r.leaked = w.cp.LiveCount()
	var holding int
	require.NoError(w.t, w.pool.QueryRow(ctx,
		`SELECT count(*) FROM workspaces WHERE instance_id IS NOT NULL`).Scan(&holding))
	r.leaked += holding
	require.NoError(w.t, w.pool.QueryRow(ctx,
		`SELECT count(*) FROM river_job WHERE state = 'discarded'`).Scan(&r.discarded))
	rows, err := w.pool.Query(ctx, `
		SELECT w.id::text FROM workspaces w
		WHERE w.id = ANY($1::uuid[]) AND (w.status <> 'stopped' OR EXISTS (
			SELECT 1 FROM river_job j WHERE j.state = 'discarded'
				AND j.args @> jsonb_build_object('workspace_id', w.id::text)))`, ids)
	require.NoError(w.t, err)
	defer rows.Close()
	for rows.Next() {
		var id string
		require.NoError(w.t, rows.Scan(&id))
		r.badRows = append(r.badRows, id)
	}
	require.NoError(w.t, rows.Err())
	var present int
	require.NoError(w.t, w.pool.QueryRow(ctx, `SELECT count(*) FROM workspaces WHERE id = ANY($1::uuid[])`, ids).Scan(&present))
	r.lost = len(r.badRows) + len(ids) - present
	return r
}

// explain logs what is left: live instances, unfinished jobs and the
// timelines of a few bad rows.
func (r chaosReport) explain(t *testing.T) {
	ctx := context.Background()
	for i, inst := range r.w.cp.Live("") {
		if i == 10 {
			break
		}
		t.Logf("live instance: %+v", inst)
	}
	rows, err := r.w.pool.Query(ctx, `
		SELECT id, kind, state::text, attempt, args::text, coalesce(errors[array_length(errors,1)]::text, '')
		FROM river_job WHERE state NOT IN ('completed','cancelled') ORDER BY id LIMIT 20`)
	if err == nil {
		for rows.Next() {
			var id int64
			var kind, state, args, lastErr string
			var attempt int
			if rows.Scan(&id, &kind, &state, &attempt, &args, &lastErr) == nil {
				t.Logf("job %d %s %s attempt=%d args=%s last_error=%s", id, kind, state, attempt, args, lastErr)
			}
		}
		rows.Close()
	}
	for i, id := range r.badRows {
		if i == 5 {
			break
		}
		evs, err := r.w.pool.Query(ctx, `SELECT event, coalesce(job_id, 0), fields::text FROM workspace_events
			WHERE workspace_id = $1 ORDER BY id`, id)
		if err != nil {
			continue
		}
		for evs.Next() {
			var ev, fields string
			var job int64
			if evs.Scan(&ev, &job, &fields) == nil {
				t.Logf("%s: %s job=%d %s", id, ev, job, fields)
			}
		}
		evs.Close()
	}
}
