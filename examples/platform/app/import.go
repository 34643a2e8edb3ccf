package app

import (
	"context"
	"database/sql"
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
	rows := make([]jobs.ImportRow, len(live))
	removed := map[string]bool{}
	for i, in := range live {
		rows[i] = jobs.ImportRow{WorkspaceID: in.WorkspaceID, InstanceID: in.InstanceID, Runtime: in.Runtime, Tier: in.Tier}
		removed[in.WorkspaceID] = in.Status == hostdb.StatusRemoved
	}
	rep, err := jobs.Import(ctx, jobs.SQLDB(tx), rows, jobs.ImportOptions{Schema: schema, DryRun: dryRun, Actor: "platform-import"})
	if err != nil {
		return ImportReport{}, fmt.Errorf("import: %w", err)
	}
	out := ImportReport{ImportReport: rep, Stops: []string{}}
	for _, o := range rep.Outcomes {
		if removed[o.Row.WorkspaceID] && o.Action != jobs.ImportRefused {
			out.Stops = append(out.Stops, o.Row.WorkspaceID)
		}
	}
	if dryRun {
		return out, nil
	}
	if len(out.Stops) > 0 {
		client, err := jobs.NewInsertClientSQL(db, jobs.Settings{Schema: schema})
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
