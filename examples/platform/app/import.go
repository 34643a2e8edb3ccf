package app

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/molecule-ai/provision-worker/jobs"

	"example.com/platform/hostdb"
)

// ImportReport is what `platform import` prints.
type ImportReport struct {
	jobs.ImportReport
	// Stops lists the removed rows that still held an instance id: the
	// old polling loop's pending stops, handed to the worker as
	// terminates in the same transaction.
	Stops []string `json:"stops"`
	// Owned lists rows the worker already has in a state other than
	// running (an earlier import's stop, a restart under way): left to
	// it, so a re-run of the import is harmless.
	Owned []string `json:"owned"`
}

// Import registers every host row that holds an instance id as owned and
// running in the worker (cutover onto a live fleet), in one transaction,
// before the first sweep: otherwise the sweep sees the whole fleet as
// strays. Rows the host already removed get a terminate in the same
// transaction, so nothing is left for the old loop. Idempotent; with
// dryRun nothing changes.
func Import(ctx context.Context, db *sql.DB, schema string, dryRun bool) (ImportReport, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return ImportReport{}, fmt.Errorf("begin: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	live, err := hostdb.Instances(ctx, tx)
	if err != nil {
		return ImportReport{}, err
	}
	rows, owned, err := candidates(ctx, tx, schema, live)
	if err != nil {
		return ImportReport{}, err
	}
	rep, err := jobs.Import(ctx, jobs.SQLDB(tx), rows, jobs.ImportOptions{Schema: schema, DryRun: dryRun, Actor: "platform-import"})
	if err != nil {
		return ImportReport{}, fmt.Errorf("import: %w", err)
	}
	out := ImportReport{ImportReport: rep, Stops: rep.Stops(), Owned: owned}
	if dryRun {
		return out, nil
	}
	if len(out.Stops) > 0 {
		client, err := jobs.NewInsertClientSQL(db, jobs.Settings{Schema: schema, EnvFromHost: true, OutcomeToHost: true})
		if err != nil {
			return ImportReport{}, err
		}
		opts := jobs.TerminateOptions{Delete: true, Actor: "platform-import"}
		if _, err := jobs.RequestTerminateMany(ctx, tx, client, out.Stops, opts); err != nil {
			return ImportReport{}, fmt.Errorf("request terminate of removed rows: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return ImportReport{}, fmt.Errorf("commit: %w", err)
	}
	return out, nil
}

// candidates splits the host's rows: those to hand to jobs.Import (new to
// the worker, or running there, which Import reports unchanged or refuses
// if the instance differs), and those the worker already owns in another
// state. Import refuses the latter by contract; they are the worker's
// now, and a second run of the cutover must not fail on them. One read
// per row: a cutover runs once, and 10,000 rows take seconds.
func candidates(ctx context.Context, tx *sql.Tx, schema string, live []hostdb.Instance) ([]jobs.ImportRow, []string, error) {
	rows := make([]jobs.ImportRow, 0, len(live))
	owned := []string{}
	for _, in := range live {
		ws, err := jobs.GetWorkspace(ctx, jobs.SQLDB(tx), schema, in.WorkspaceID)
		switch {
		case errors.Is(err, jobs.ErrUnknownWorkspace):
		case err != nil:
			return nil, nil, fmt.Errorf("read worker row: %w", err)
		case ws.Status != jobs.StatusRunning:
			owned = append(owned, in.WorkspaceID)
			continue
		}
		rows = append(rows, jobs.ImportRow{WorkspaceID: in.WorkspaceID, InstanceID: in.InstanceID, Runtime: in.Runtime, Tier: in.Tier,
			Removed: in.Status == hostdb.StatusRemoved})
	}
	return rows, owned, nil
}
