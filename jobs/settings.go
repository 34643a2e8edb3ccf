package jobs

import (
	"fmt"
	"time"

	"github.com/molecule-ai/provision-worker/internal/store"
)

// Settings tune retries and waits. Zero values mean the defaults.
type Settings struct {
	// BackoffBase is the first retry's delay; each attempt doubles it.
	BackoffBase time.Duration
	// TerminateBackoffCap and ProvisionBackoffCap bound one retry's delay.
	TerminateBackoffCap time.Duration
	ProvisionBackoffCap time.Duration
	// TerminateMaxAttempts is large on purpose: about three days at the
	// cap, so a CP outage over a weekend does not discard a stop.
	TerminateMaxAttempts int
	ProvisionMaxAttempts int
	// TerminateStuckAfter is how many attempts in a row a terminate may
	// fail the same way before terminate.stuck says so, long before its
	// budget runs out.
	TerminateStuckAfter int
	// MaxSnoozes bounds how often one job may snooze (Retry-After,
	// credentials being rotated, waiting for a provision). A snooze gives
	// the attempt back, so an unbounded one would never discard and never
	// alert (invariant "no silent stop", docs/design.md).
	MaxSnoozes int
	// SnoozeCap bounds one snooze, whatever Retry-After asks for.
	SnoozeCap time.Duration
	// AuthSnooze is how long a job waits after a 401/403.
	AuthSnooze time.Duration
	// ProvisionWait is how long a terminate with no recorded instance
	// waits for an in-flight provision before looking again.
	ProvisionWait time.Duration
	// ProvisionTimeout and TerminateTimeout are River's per-kind job
	// timeouts; each must exceed the CP client's timeout (invariant "no
	// transaction across a CP call", docs/design.md).
	ProvisionTimeout time.Duration
	TerminateTimeout time.Duration
	// ListUnsupportedAnswers and ListUnsupportedSpan are the evidence a
	// process needs before it reads the CP as having no list endpoint:
	// that many 404/405 list answers in a row, spanning at least that
	// long, and no list answer ever succeeded (see internal/worker's
	// listGuard).
	ListUnsupportedAnswers int
	ListUnsupportedSpan    time.Duration
	// ListUnsupportedReprobe is how often a process that decided so lets
	// one list call through to the CP anyway; a success undoes the
	// decision (a CP gateway's 404s at start-up used to switch CP-side
	// confirmation off until the next restart).
	ListUnsupportedReprobe time.Duration
	// RefuseAmbiguousWithoutList marks a retried provision failed instead
	// of launching again when the CP has no list endpoint to adopt from:
	// for CPs that also ignore Idempotency-Key, where a retry may leak.
	RefuseAmbiguousWithoutList bool
	// Schema is the Postgres schema of everything the worker creates:
	// River's tables (every River client built here sets Config.Schema to
	// it), the project's own, goose's version table. "" is
	// store.DefaultSchema ("provisioner"). A host database already has a
	// workspaces table in public; sharing it is what failed.
	Schema string
	// EnvFromHost and OutcomeToHost are the request side's contract with
	// the host's hooks (EnvFunc, OutcomeFunc), declared on the jobs
	// themselves because a schema's queues are shared by every worker on
	// it, and the hooks are configured per worker process. An insert
	// client (NewInsertClient, NewInsertClientSQL) built with them marks
	// every provision it inserts as needing the env hook (EnvFromHost) and
	// every provision and terminate as needing the outcome hook
	// (OutcomeToHost), in the job's metadata; a worker with the hooks
	// marks the jobs it inserts itself the same way. A worker that fetches
	// a job needing a hook it does not have does not work it: it logs
	// job.hook_missing (error level) and snoozes it for a worker that has
	// the hook (see hookGuard). With EnvFromHost a ProvisionRequest that
	// carries Env is refused (ErrEnvWithHostEnv): the host's env lives in
	// the host's table, never in the worker's.
	EnvFromHost   bool
	OutcomeToHost bool
	// CompletionSynchronousCommit is Postgres's synchronous_commit for the
	// transactions that complete a job (COMPLETION_SYNCHRONOUS_COMMIT):
	// "on" (the default; "" reads as it) leaves the server's setting
	// alone, "off" runs SET LOCAL synchronous_commit = off in each, so its
	// COMMIT returns before the WAL reaches disk. It is an opt-in
	// durability trade, argued in docs/design.md ("Durability:
	// asynchronous completion commits"): a commit lost with the server
	// loses the row change and the job's completion together, and the job
	// runs again (retried, or re-run by River's rescuer). Nothing else the
	// worker writes changes: provision.start, the request transactions and
	// River's own statements stay as the server says.
	CompletionSynchronousCommit string
}

// Values of CompletionSynchronousCommit: Postgres's own names, so an
// operator reads the setting with the server's documented meaning. Its
// other values (local, remote_write, remote_apply) are refused: they trade
// against a standby, a loss this project has not argued or tested.
const (
	SynchronousCommitOn  = "on"
	SynchronousCommitOff = "off"
)

// AsyncCompletionCommit reports whether completing transactions commit
// with synchronous_commit = off.
func (s Settings) AsyncCompletionCommit() bool {
	return s.CompletionSynchronousCommit == SynchronousCommitOff
}

// DefaultSettings are the production defaults.
func DefaultSettings() Settings {
	return Settings{
		BackoffBase:          time.Second,
		TerminateBackoffCap:  5 * time.Minute,
		ProvisionBackoffCap:  5 * time.Minute,
		TerminateMaxAttempts: 870,
		ProvisionMaxAttempts: 25,
		TerminateStuckAfter:  10,
		MaxSnoozes:           50,
		SnoozeCap:            5 * time.Minute,
		AuthSnooze:           time.Minute,
		ProvisionWait:        5 * time.Second,
		ProvisionTimeout:     2 * time.Minute,
		TerminateTimeout:     2 * time.Minute,

		ListUnsupportedAnswers: 5,
		ListUnsupportedSpan:    time.Minute,
		ListUnsupportedReprobe: 5 * time.Minute,
		Schema:                 store.DefaultSchema,

		CompletionSynchronousCommit: SynchronousCommitOn,
	}
}

// withDefaults fills zero fields from DefaultSettings.
func (s Settings) withDefaults() Settings { return s.Or(DefaultSettings()) }

// Or returns s with each zero (or negative) field taken from fallback:
// how defaults apply, and how tests lay their own values over fast ones.
func (s Settings) Or(fallback Settings) Settings {
	orDur := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	orInt := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	orDur(&s.BackoffBase, fallback.BackoffBase)
	orDur(&s.TerminateBackoffCap, fallback.TerminateBackoffCap)
	orDur(&s.ProvisionBackoffCap, fallback.ProvisionBackoffCap)
	orDur(&s.SnoozeCap, fallback.SnoozeCap)
	orDur(&s.AuthSnooze, fallback.AuthSnooze)
	orDur(&s.ProvisionWait, fallback.ProvisionWait)
	orDur(&s.ProvisionTimeout, fallback.ProvisionTimeout)
	orDur(&s.TerminateTimeout, fallback.TerminateTimeout)
	orDur(&s.ListUnsupportedSpan, fallback.ListUnsupportedSpan)
	orInt(&s.ListUnsupportedAnswers, fallback.ListUnsupportedAnswers)
	orDur(&s.ListUnsupportedReprobe, fallback.ListUnsupportedReprobe)
	orInt(&s.TerminateMaxAttempts, fallback.TerminateMaxAttempts)
	orInt(&s.ProvisionMaxAttempts, fallback.ProvisionMaxAttempts)
	orInt(&s.MaxSnoozes, fallback.MaxSnoozes)
	orInt(&s.TerminateStuckAfter, fallback.TerminateStuckAfter)
	s.RefuseAmbiguousWithoutList = s.RefuseAmbiguousWithoutList || fallback.RefuseAmbiguousWithoutList
	s.EnvFromHost = s.EnvFromHost || fallback.EnvFromHost
	s.OutcomeToHost = s.OutcomeToHost || fallback.OutcomeToHost
	if s.Schema == "" {
		s.Schema = fallback.Schema
	}
	if s.CompletionSynchronousCommit == "" {
		s.CompletionSynchronousCommit = fallback.CompletionSynchronousCommit
	}
	return s
}

// Validate checks that job timeouts outlive a CP call (invariant "no
// transaction across a CP call", docs/design.md): a
// job cut off while the CP acts would retry into a call that may have
// already succeeded.
func (s Settings) Validate(cpTimeout time.Duration) error {
	s = s.withDefaults()
	if c := s.CompletionSynchronousCommit; c != SynchronousCommitOn && c != SynchronousCommitOff {
		return fmt.Errorf("COMPLETION_SYNCHRONOUS_COMMIT must be %q or %q", SynchronousCommitOn, SynchronousCommitOff)
	}
	if s.ProvisionTimeout <= cpTimeout || s.TerminateTimeout <= cpTimeout {
		return fmt.Errorf("job timeouts (provision %s, terminate %s) must exceed the CP timeout %s",
			s.ProvisionTimeout, s.TerminateTimeout, cpTimeout)
	}
	return nil
}

// MaxAttempts is the attempt budget a job of kind gets when a client
// built here inserts it under these settings (0: the kind's own
// InsertOpts). TERMINATE_MAX_ATTEMPTS applies to jobs inserted by handlers
// and by the worker alike, because both clients ask this.
func (s Settings) MaxAttempts(kind string) int {
	s = s.withDefaults()
	switch kind {
	case KindTerminate, KindInstanceTerminate:
		return s.TerminateMaxAttempts
	case KindProvision:
		return s.ProvisionMaxAttempts
	}
	return 0
}
