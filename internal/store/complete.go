package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// completeJobSQL completes a running job of one attempt, as River's
// JobCompleteTx does (state completed, finalized_at set, nothing else
// touched), and fails the statement when it matched no job: a job
// rescued, cancelled or re-run under a newer attempt is not completed,
// and the error aborts the transaction, so the completing transaction
// can carry its COMMIT in the same pipeline (invariant
// "completion-checked commit"). The error is a division by zero over
// the count of completed rows: plain SQL has no RAISE, and an aggregate
// cannot be folded at plan time, so it fails only when nothing matched.
//
// River's own statement (JobSetStateIfRunningMany) serves every state
// change of a batch of jobs; for one job it cost more server time than
// the rest of a completing transaction together (docs/benchmarks.md).
const completeJobSQL = `
	WITH done AS (
		UPDATE {schema}.river_job SET state = 'completed', finalized_at = $3
		WHERE id = $1 AND state = 'running' AND attempt = $2
		RETURNING 1
	)
	SELECT 1 / count(*) FROM done`

// QueueCompleteJob queues the completion of job id's attempt on b (see
// completeJobSQL); the statement fails, with an error IsNotCompleted
// reports, when the job no longer runs under that attempt.
func (st *Store) QueueCompleteJob(b *pgx.Batch, id int64, attempt int, at time.Time) {
	b.Queue(st.q(completeJobSQL), id, attempt, at.UTC())
}

// IsNotCompleted reports whether err is completeJobSQL's refusal.
func IsNotCompleted(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "22012" // division_by_zero
}

// JobState reads a job's state and attempt: why a completion was refused.
// ErrNotFound: the job is gone.
func (st *Store) JobState(ctx context.Context, db DB, id int64) (state string, attempt int, err error) {
	err = st.on(db).QueryRow(ctx, `SELECT state::text, attempt FROM {schema}.river_job WHERE id = $1`, id).Scan(&state, &attempt)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", 0, ErrNotFound
	}
	if err != nil {
		return "", 0, fmt.Errorf("store: read job %d: %w", id, err)
	}
	return state, attempt, nil
}
