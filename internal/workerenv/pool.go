package workerenv

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/molecule-ai/provision-worker/internal/config"
	"github.com/molecule-ai/provision-worker/jobs"
)

// The worker's pool size when DATABASE_URL sets no pool_max_conns. pgx's
// own default, max(4, CPUs), is 4 on a small host, and River holds one of
// them for good (its LISTEN connection): 40 workers and River's fetches
// and completions then queue for 3 connections, and at a few hundred jobs
// a second the queue grows while the workers wait on the pool, not on the
// CP (issue 15's soak: 75 % of acquires found the pool empty). A job holds
// a connection only for its statements, never across a CP call
// (invariant "no transaction across a CP call" in docs/design.md), so a
// connection per PoolWorkersPerConn workers serves them, plus
// PoolRiverConns for River's own: LISTEN, one fetch per queue, the batched
// completer and the leader's maintenance.
const (
	PoolWorkersPerConn = 4
	PoolRiverConns     = 4
)

// DefaultMaxConns is the pool size the worker derives from its worker
// counts: (ProvisionWorkers + TerminateWorkers) / PoolWorkersPerConn,
// rounded up, + PoolRiverConns. Zero counts are taken as their defaults
// (jobs.Options.WithDefaults, the worker client's own).
func DefaultMaxConns(o jobs.Options) int32 {
	o = o.WithDefaults(jobs.DefaultSettings())
	return int32((o.ProvisionWorkers+o.TerminateWorkers+PoolWorkersPerConn-1)/PoolWorkersPerConn + PoolRiverConns)
}

// PoolConfig parses DATABASE_URL into the worker's pool settings: pgx's,
// sized by DefaultMaxConns (never below pgx's own default) unless the
// URL sets pool_max_conns: an operator's size always wins. pgx's own message is not shown: it
// may quote the password.
func PoolConfig(databaseURL string, o jobs.Options) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("%w: DATABASE_URL: want a Postgres URL like postgres://user@host:5432/db", config.ErrUsage)
	}
	if !setsMaxConns(databaseURL) {
		cfg.MaxConns = max(DefaultMaxConns(o), cfg.MaxConns)
	}
	return cfg, nil
}

// setsMaxConns reports whether a connection string pgx parsed sets
// pool_max_conns: as a query parameter of a URL, or as a key of the
// keyword=value form.
func setsMaxConns(conn string) bool {
	const key = "pool_max_conns"
	if strings.HasPrefix(conn, "postgres://") || strings.HasPrefix(conn, "postgresql://") {
		u, err := url.Parse(conn)
		return err == nil && u.Query().Has(key)
	}
	for _, f := range strings.Fields(conn) {
		if k, _, ok := strings.Cut(f, "="); ok && strings.TrimSpace(k) == key {
			return true
		}
	}
	return false
}
