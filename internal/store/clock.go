package store

import (
	"context"
	"fmt"
	"time"
)

// DBClock reads Postgres's own clock (clock_timestamp, not the
// transaction's now()).
func DBClock(ctx context.Context, db DB) (time.Time, error) {
	var t time.Time
	if err := db.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&t); err != nil {
		return time.Time{}, fmt.Errorf("store: read the database clock: %w", err)
	}
	return t, nil
}
