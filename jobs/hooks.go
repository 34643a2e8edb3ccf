package jobs

import (
	"context"
	"database/sql"
	"errors"
)

// EnvFunc returns a workspace's env at the moment its provision calls the
// CP. A host that keeps secrets encrypted in its own table sets it, and
// the worker then stores no env value anywhere: the values live in this
// process only for the length of one CP call. An error is retried like a
// CP error, never turned into a failed workspace, and its text is never
// logged or recorded (it may name the secret that failed to decrypt): it
// is replaced by ErrEnvHook everywhere, and counted in
// provisioner_hook_failures_total{hook="env"}. A panic counts as an error.
// The last attempt snoozes (bounded by Settings.MaxSnoozes) instead of
// failing the workspace; once that budget is spent River discards the job
// with the row still provisioning, and past PROVISIONING_DEADLINE the
// orphan sweep re-runs it rather than marking it failed: the host's outage
// says nothing about the workspace. The hook's context ends early enough
// to leave the CP call its whole timeout.
//
// A worker without the hook on the same schema would provision with no
// env: requests declare it with Settings.EnvFromHost, and such a worker
// then leaves their provisions alone (job.hook_missing).
//
// With it set, env stored beside a row (a request that passed Env, or a
// row from before the hook) is not read and not sent: a
// provision.stored_env_ignored warning, with no key or value, says so.
//
// Without it, the env a request passes is stored in plain jsonb in the
// worker's workspace_env table and read at call time. It is not encrypted
// there on purpose: an encryption key would have to sit beside the
// DATABASE_URL that already reads the table (so it would protect only
// backups, and badly), and its rotation would be one more thing to get
// wrong; a host that must not keep secrets at rest here sets this hook
// instead, which keeps them in the host's own encrypted table. A delete
// request drops the workspace's env in its own transaction.
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
	// Status is StatusRunning, StatusFailed, StatusStopped or StatusRemoved;
	// or StatusProvisioning when a restart's stop finished and its next
	// generation began: the old instance is gone, so the host clears its
	// column while the new one boots (its running Outcome follows).
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
//
// It is called for every status change the worker itself makes: a
// provision recorded (running), a provision failed for good (failed), a
// stop finished (stopped or removed, or provisioning for a restart), and
// the orphan sweep marking a row stuck in provisioning failed. Requests
// (RequestProvision, RequestTerminate) run in the host's own transaction,
// where the host writes its row itself, so they do not call it. Its error
// is logged and becomes the job's error (River UI shows it), wrapped in
// ErrOutcomeHook; it never reaches the timeline, and it is never read as
// a CP failure, so it never marks a workspace failed. A panic counts as
// an error.
//
// Since an error retries the job (a stop included) until it succeeds,
// return one only for a database failure: a status the host does not
// know, or a row it no longer has, is better written as nothing than
// refused (examples/platform's ApplyOutcome learned this from a restart
// whose provisioning Outcome it refused, holding the stop for ever).
//
// A worker without the hook on the same schema would change rows without
// telling the host: requests declare it with Settings.OutcomeToHost, and
// such a worker then leaves their jobs alone (job.hook_missing).
type OutcomeFunc func(ctx context.Context, tx Execer, o Outcome) error

// GenericFailure is the only text a failed Outcome carries.
const GenericFailure = "provisioning failed"

// ErrEnvHook is the only text a failed EnvFunc leaves behind: in the job's
// error (River stores it and River UI shows it), the log and the
// timeline. The hook's own error is dropped unread, because a host's
// decryption error can quote the secret, its key id or the ciphertext.
var ErrEnvHook = errors.New("env hook failed (its error is not recorded: it may hold secrets)")

// ErrOutcomeHook marks an OutcomeFunc failure: the worker's row change and
// the job's completion were rolled back with it, and the job retries. It
// is never read as a CP failure, so it never marks a workspace failed.
var ErrOutcomeHook = errors.New("outcome hook failed; the worker's change was rolled back")
