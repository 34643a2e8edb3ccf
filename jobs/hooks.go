package jobs

import (
	"context"
	"database/sql"
)

// EnvFunc returns a workspace's env at the moment its provision calls the
// CP. A host that keeps secrets encrypted in its own table sets it, and
// the worker then stores no env value anywhere: the values live in this
// process only for the length of one CP call. An error is retried like a
// CP error, never turned into a failed workspace, and its text is never
// logged or recorded (it may name the secret that failed to decrypt).
type EnvFunc func(ctx context.Context, workspaceID string) (map[string]string, error)

// Execer is the worker's own transaction as an OutcomeFunc sees it.
// *sql.Tx has the same method, so a host writes one function that updates
// its row and calls it from both its handlers and the hook.
type Execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// Outcome is a workspace's new state as the host's own row should show it.
type Outcome struct {
	WorkspaceID string
	// Status is StatusRunning, StatusFailed, StatusStopped or StatusRemoved.
	Status Status
	// InstanceID is the running instance; "" for every other status (the
	// host clears its column).
	InstanceID string
	// Message is generic ("provisioning failed") when Status is
	// StatusFailed, "" otherwise: the CP's own text can hold AMI ids and
	// VPC paths and is never handed on.
	Message    string
	Generation int64
}

// OutcomeFunc writes an Outcome into the host's own row. It runs inside
// the transaction that changes the worker's row and completes the job,
// so the two rows never disagree: an error rolls all of it back and the
// job retries. It must not call out of the database (no HTTP, no CP).
type OutcomeFunc func(ctx context.Context, tx Execer, o Outcome) error

// GenericFailure is the only text a failed Outcome carries.
const GenericFailure = "provisioning failed"
