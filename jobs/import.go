package jobs

import (
	"context"
	"errors"
)

// ImportRow is one of the host's running workspaces, registered as owned
// and running before the first sweep (cutover onto a live fleet).
type ImportRow struct {
	WorkspaceID string `json:"workspace_id"`
	InstanceID  string `json:"instance_id"`
	Runtime     string `json:"runtime"`
	Tier        int    `json:"tier"`
	PlatformURL string `json:"platform_url,omitempty"`
}

// ImportOptions tune Import.
type ImportOptions struct {
	// Schema is the worker's schema ("" is the default, "provisioner").
	Schema string
	// DryRun decides every row and changes nothing.
	DryRun bool
	// Actor names who imported, on the timeline ("" is "import").
	Actor string
}

// Import actions, one per row.
const (
	ImportCreated   = "created"   // registered as owned and running
	ImportUnchanged = "unchanged" // already registered with this instance (idempotent re-run)
	ImportRefused   = "refused"   // see ImportOutcome.Reason
)

// ImportOutcome is what Import did (or, in a dry run, would do) with one row.
type ImportOutcome struct {
	Row    ImportRow
	Action string
	Reason string // why it was refused; "" otherwise
}

// ImportReport lists every row's outcome, in input order.
type ImportReport struct {
	Outcomes                    []ImportOutcome
	Created, Unchanged, Refused int
}

// Import registers rows as owned and running inside the caller's
// transaction (db from PgxDB or SQLDB). It is idempotent, refuses a row
// whose instance id is malformed or already owned by another workspace,
// and, with DryRun, changes nothing.
func Import(ctx context.Context, db DB, rows []ImportRow, opts ImportOptions) (ImportReport, error) {
	return ImportReport{}, errors.New("jobs: Import is not implemented yet")
}
