package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// soakVacuumEvery is how often the soak's stand-in for autovacuum looks
// at the tables, where autovacuum's default naptime is a minute: the
// soak lasts two, and a stand-in that ran once would not stand in.
const soakVacuumEvery = 15 * time.Second

// soakVacuumTables are the tables the soak's jobs churn: every job
// version is a dead tuple of river_job (River's state changes are no HOT
// updates), and each request updates its workspaces row.
var soakVacuumTables = []string{"river_job", "workspaces", "workspace_events"}

// autovacuumOn reports the server's autovacuum setting.
func autovacuumOn(ctx context.Context, db *pgxpool.Pool) (bool, error) {
	var v string
	if err := db.QueryRow(ctx, `SHOW autovacuum`).Scan(&v); err != nil {
		return false, fmt.Errorf("show autovacuum: %w", err)
	}
	return v == "on", nil
}

// standInVacuum does what autovacuum would, on a server where it is off:
// every soakVacuumEvery, VACUUM (ANALYZE) each churned table whose dead
// tuples exceed autovacuum's default threshold (50 + 20 % of its live
// ones). Without it nothing removes a dead tuple or refreshes a
// statistic during the soak, which no production server does: in a run
// on such a server river_job gathered 93,000 dead tuples in two minutes,
// the worker pool's empty acquires went from 5/s to 200/s and pickup p99
// grew sixfold. It returns a func that stops it and returns how many
// vacuums it ran.
func standInVacuum(ctx context.Context, db *pgxpool.Pool, fail func(error)) func() int {
	stop, done := make(chan struct{}), make(chan int)
	go func() {
		n := 0
		defer func() { done <- n }()
		t := time.NewTicker(soakVacuumEvery)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			ran, err := vacuumDue(ctx, db)
			if err != nil {
				if ctx.Err() == nil {
					fail(err)
				}
				return
			}
			n += ran
		}
	}()
	return func() int {
		close(stop)
		return <-done
	}
}

// vacuumDue vacuums the churned tables past autovacuum's threshold.
func vacuumDue(ctx context.Context, db *pgxpool.Pool) (int, error) {
	ran := 0
	for _, tbl := range soakVacuumTables {
		var due bool
		err := db.QueryRow(ctx, `
			SELECT coalesce(n_dead_tup > 50 + 0.2 * n_live_tup, false)
			FROM pg_stat_user_tables WHERE schemaname = $1 AND relname = $2`,
			benchStore.Schema(), tbl).Scan(&due)
		if err != nil {
			return ran, fmt.Errorf("dead tuples of %s: %w", tbl, err)
		}
		if !due {
			continue
		}
		if _, err := db.Exec(ctx, benchStore.Q(`VACUUM (ANALYZE) {schema}.`+tbl)); err != nil {
			return ran, fmt.Errorf("vacuum %s: %w", tbl, err)
		}
		ran++
	}
	return ran, nil
}
