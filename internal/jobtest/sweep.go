package jobtest

import (
	"context"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/molecule-ai/provision-worker/internal/cp/cpfake"
	"github.com/molecule-ai/provision-worker/internal/store"
)

// Row is a workspace row seeded directly, in a state the request API
// would only reach through a crash or a lost job (what the sweep is for).
type Row struct {
	ID         string // a new UUID when empty
	Status     string
	Desired    string // running when empty
	InstanceID string
	ChangedAgo time.Duration // status_changed_at = now - ChangedAgo
}

// SeedRows writes rows with COPY (fast enough for 100,000) and returns
// them with their ids filled in.
func SeedRows(ctx context.Context, db interface {
	CopyFrom(context.Context, pgx.Identifier, []string, pgx.CopyFromSource) (int64, error)
}, rows []Row) ([]Row, error) {
	now := time.Now()
	src := make([][]any, len(rows))
	for i := range rows {
		r := &rows[i]
		if r.ID == "" {
			r.ID = uuid.NewString()
		}
		if r.Desired == "" {
			r.Desired = store.DesiredRunning
		}
		var inst any
		if r.InstanceID != "" {
			inst = r.InstanceID
		}
		changed := now.Add(-r.ChangedAgo)
		src[i] = []any{r.ID, r.Status, r.Desired, inst, int64(1), store.NewNonce(), changed}
	}
	_, err := db.CopyFrom(ctx, pgx.Identifier{"workspaces"},
		[]string{"id", "status", "desired_state", "instance_id", "generation", "provision_nonce", "status_changed_at"},
		pgx.CopyFromRows(src))
	return rows, err
}

// SeedRows seeds rows in the Env's database.
func (e *Env) SeedRows(rows ...Row) []Row {
	e.T.Helper()
	out, err := SeedRows(context.Background(), e.Pool, rows)
	if err != nil {
		e.T.Fatalf("jobtest: seed rows: %v", err)
	}
	return out
}

// OldInstance adds a running instance of workspaceID to the fake CP,
// launched an hour ago (past any test grace period), and returns its id.
func (e *Env) OldInstance(workspaceID string) string {
	return e.CP.AddInstance(workspaceID, cpfake.StateRunning, time.Now().Add(-time.Hour)).InstanceID
}

// SeedHealthy seeds n running rows, each recording an old running
// instance: the healthy fleet strays are measured against.
func (e *Env) SeedHealthy(n int) []Row {
	e.T.Helper()
	rows := make([]Row, n)
	for i := range rows {
		id := uuid.NewString()
		rows[i] = Row{ID: id, Status: store.StatusRunning, InstanceID: e.OldInstance(id)}
	}
	return e.SeedRows(rows...)
}

// JobsOfKind lists every job of kind, any state, oldest first.
func (e *Env) JobsOfKind(kind string) []*rivertype.JobRow {
	e.T.Helper()
	res, err := e.Insert.JobList(context.Background(), river.NewJobListParams().Kinds(kind).
		States(rivertype.JobStates()...).First(10_000))
	if err != nil {
		e.T.Fatalf("jobtest: list %s jobs: %v", kind, err)
	}
	return res.Jobs
}
