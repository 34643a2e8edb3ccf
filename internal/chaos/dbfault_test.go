package chaos

import (
	"context"
	"fmt"
	"github.com/molecule-ai/provision-worker/internal/testdb"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/cp/cpfake"
)

// provisionThenStop provisions ids, runs fault while they work, waits for
// them to run, terminates them, runs fault again, and waits for the queue
// to drain with nothing live and nothing discarded.
func (w *world) provisionThenStop(ids []string, fault func()) {
	t := w.t
	t.Helper()
	w.enqueueAll("provision", ids, 4)
	fault()
	_, err := w.drainWhere(`SELECT count(*) FROM workspaces WHERE status <> 'running'`, 2*time.Minute)
	require.NoError(t, err)
	w.enqueueAll("terminate", ids, 4)
	fault()
	c, err := w.drain(2 * time.Minute)
	require.NoError(t, err)
	require.Zero(t, c.discarded)
	require.Zero(t, w.cp.LiveCount())
	require.Zero(t, w.cp.Stats().Duplicates)
}

func newIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = uuid.NewString()
	}
	return ids
}

// A worker whose Postgres connections are all killed mid-run
// (pg_terminate_backend) reconnects and finishes its work. Pins that no
// database error is fatal to the process (RunWorker only returns on
// ctx.Done) and that a completion lost with its connection is retried
// rather than dropped (the job stays running and River re-runs it).
func TestDBFault_WorkerReconnectsAfterItsBackendsAreKilled(t *testing.T) {
	w := newWorld(t, cpfake.Options{Latency: 30 * time.Millisecond}, nil)
	p := w.startWorker("dbkill-w0")
	killed := 0
	kill := func() {
		for range 3 {
			time.Sleep(150 * time.Millisecond) // let work get under way between kills
			var n int
			require.NoError(t, w.pool.QueryRow(context.Background(), `
				SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
				WHERE application_name = $1`, p.name).Scan(&n))
			killed += n
		}
	}
	w.provisionThenStop(newIDs(40), kill)
	require.Positive(t, killed, "no worker connection was killed")
	require.True(t, p.running(), "the worker exited after losing its connections")
}

// A worker whose Postgres restarts (on a private cluster: the shared one
// serves other tests) reconnects and finishes its work.
func TestDBFault_WorkerSurvivesPostgresRestart(t *testing.T) {
	pg := startPrivatePostgres(t)
	w := newWorldAt(t, pg.url, cpfake.Options{Latency: 30 * time.Millisecond}, nil)
	p := w.startWorker("pgrestart-w0")
	restarts := 0
	restart := func() {
		time.Sleep(200 * time.Millisecond)
		pg.restart(t)
		restarts++
	}
	w.provisionThenStop(newIDs(30), restart)
	require.Equal(t, 2, restarts)
	require.True(t, p.running(), "the worker exited when Postgres restarted")
}

// newWorldAt is newWorld on a database that is already migrated.
func newWorldAt(t *testing.T, dbURL string, fake cpfake.Options, env map[string]string) *world {
	t.Helper()
	w := &world{t: t, env: env, logDir: t.TempDir(), dbURL: dbURL}
	w.worker, w.enqueue, w.host = binaries(t)
	pool, err := pgxpool.New(context.Background(), testdb.WithSearchPath(dbURL))
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	w.pool = pool
	fake.OrgID = orgID
	w.cp = cpfake.Start(fake)
	t.Cleanup(w.cp.Close)
	t.Cleanup(w.stopAll)
	return w
}

const pgBin = "/usr/lib/postgresql/15/bin"

// privatePostgres is a throwaway cluster owned by the postgres OS user.
type privatePostgres struct {
	dir, url string
	opts     string // the server's command-line options, for a start after a crash
}

// startPrivatePostgres runs initdb and pg_ctl as the postgres user (initdb
// refuses root) on a free port, creates and migrates a database, and
// stops the cluster when the test ends. settings are extra server
// settings (name=value).
func startPrivatePostgres(t *testing.T, settings ...string) *privatePostgres {
	t.Helper()
	if _, err := os.Stat(filepath.Join(pgBin, "initdb")); err != nil {
		testdb.MissingTool(t, "Postgres server binaries not found at %s: cannot run a private cluster to restart", pgBin)
	}
	pgUser, err := user.Lookup("postgres")
	require.NoError(t, err, "the postgres OS user owns the private cluster")
	uid, _ := strconv.Atoi(pgUser.Uid)
	gid, _ := strconv.Atoi(pgUser.Gid)
	dir, err := os.MkdirTemp("", "chaos-pg-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	require.NoError(t, os.Chown(dir, uid, gid))
	pg := &privatePostgres{dir: dir}
	asPostgres(t, filepath.Join(pgBin, "initdb"), "-D", filepath.Join(dir, "data"), "-A", "trust", "-U", "postgres", "--no-sync")
	port := freePort(t)
	pg.opts = fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off", port, dir)
	for _, s := range settings {
		pg.opts += " -c " + s
	}
	pg.start(t)
	t.Cleanup(func() {
		_ = exec.Command("runuser", "-u", "postgres", "--", filepath.Join(pgBin, "pg_ctl"),
			"-D", filepath.Join(dir, "data"), "-m", "immediate", "-w", "stop").Run()
	})
	admin := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	conn, err := pgxpool.New(context.Background(), admin)
	require.NoError(t, err)
	_, err = conn.Exec(context.Background(), `CREATE DATABASE chaos`)
	conn.Close()
	require.NoError(t, err)
	pg.url = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/chaos?sslmode=disable", port)
	worker, _, _ := binaries(t)
	mig := exec.Command(worker, "migrate", "up")
	mig.Env = []string{"PATH=" + os.Getenv("PATH"), "DATABASE_URL=" + pg.url}
	out, err := mig.CombinedOutput()
	require.NoError(t, err, "migrate: %s", out)
	return pg
}

// restart is a fast restart: every connection is dropped.
func (pg *privatePostgres) restart(t *testing.T) {
	t.Helper()
	asPostgres(t, filepath.Join(pgBin, "pg_ctl"), "-D", filepath.Join(pg.dir, "data"), "-m", "fast", "-w", "restart")
}

func (pg *privatePostgres) start(t *testing.T) {
	t.Helper()
	asPostgres(t, filepath.Join(pgBin, "pg_ctl"), "-D", filepath.Join(pg.dir, "data"), "-l", filepath.Join(pg.dir, "log"), "-w",
		"-o", pg.opts, "start")
}

// crash stops the server the way a crash would (immediate mode: the
// postmaster SIGQUITs every backend, nothing is written, WAL still in
// shared memory is gone) and starts it again, which runs crash recovery.
func (pg *privatePostgres) crash(t *testing.T) {
	t.Helper()
	asPostgres(t, filepath.Join(pgBin, "pg_ctl"), "-D", filepath.Join(pg.dir, "data"), "-m", "immediate", "-w", "stop")
	pg.start(t)
}

// asPostgres runs a server binary as the postgres user. Its output goes to
// a file, not a pipe: the postmaster pg_ctl starts inherits it and would
// hold a pipe open, and Wait would never return.
func asPostgres(t *testing.T, bin string, args ...string) {
	t.Helper()
	out, err := os.CreateTemp("", "chaos-pgctl-")
	require.NoError(t, err)
	defer os.Remove(out.Name())
	defer out.Close()
	cmd := exec.Command("runuser", append([]string{"-u", "postgres", "--", bin}, args...)...)
	cmd.Stdout, cmd.Stderr = out, out
	err = cmd.Run()
	b, _ := os.ReadFile(out.Name())
	require.NoError(t, err, "%s: %s", filepath.Base(bin), b)
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
