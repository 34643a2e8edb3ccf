package worker

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/molecule-ai/provision-worker/internal/cp"
	"github.com/molecule-ai/provision-worker/jobs"
)

// evListUnsupported is logged once, when a process decides its CP has no
// list endpoint; evListSupportedAgain when a re-probe undoes that.
const (
	evListUnsupported    = "cp.list_unsupported_decided"
	evListSupportedAgain = "cp.list_supported_again"
)

// listGuard decides once per process, on evidence, that the CP has no list
// endpoint: ListUnsupportedAnswers 404/405 answers in a row spanning
// ListUnsupportedSpan, and no list answer ever succeeded. Until then a
// 404/405 is an ordinary failure, retried: a proxy or a CP deploy answers
// 404 for a moment too, and a terminate that read one such answer as
// "unsupported" stopped without confirming that nothing ran. Once
// decided, List answers ErrListUnsupported without asking the CP, except
// one call per ListUnsupportedReprobe, which goes through: its success
// undoes the decision. A decision that was never re-checked outlived the
// CP gateway's 404s that caused it, and until the next restart every stop
// without a recorded id completed without confirming nothing ran.
type listGuard struct {
	cp.API
	answers int
	span    time.Duration
	reprobe time.Duration
	now     func() time.Time
	log     zerolog.Logger

	mu          sync.Mutex
	succeeded   bool
	unsupported bool
	streak      int
	since       time.Time
	probedAt    time.Time // when the decision was made or last re-checked
}

func newListGuard(api cp.API, s jobs.Settings, log zerolog.Logger) cp.API {
	if g, ok := api.(*listGuard); ok {
		return g
	}
	if s.ListUnsupportedReprobe <= 0 {
		s.ListUnsupportedReprobe = jobs.DefaultSettings().ListUnsupportedReprobe
	}
	return &listGuard{API: api, answers: s.ListUnsupportedAnswers, span: s.ListUnsupportedSpan,
		reprobe: s.ListUnsupportedReprobe, now: time.Now, log: log}
}

// errUnsupportedDecided is what List answers once the process decided.
var errUnsupportedDecided = &cp.Error{Op: "list", Message: "decided earlier in this process", Err: cp.ErrListUnsupported}

// List implements cp.API.
func (g *listGuard) List(ctx context.Context, o cp.ListOptions) (cp.Page, error) {
	if !g.mayAsk() {
		return cp.Page{}, errUnsupportedDecided
	}
	p, err := g.API.List(ctx, o)
	return p, g.judge(err)
}

// mayAsk reports whether this call goes to the CP: always until the
// process decided, then once per reprobe interval.
func (g *listGuard) mayAsk() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.unsupported {
		return true
	}
	if now := g.now(); now.Sub(g.probedAt) >= g.reprobe {
		g.probedAt = now
		return true
	}
	return false
}

// judge records one list outcome and returns the error callers see.
func (g *listGuard) judge(err error) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case err == nil:
		if g.unsupported {
			g.unsupported = false
			g.log.Warn().Str("evt", evListSupportedAgain).Msg("CP list answered again: CP-side reconciliation is back on")
		}
		g.succeeded, g.streak = true, 0
		return nil
	case !errors.Is(err, cp.ErrListUnsupported):
		g.streak = 0
		return err
	case g.unsupported: // a re-probe confirmed the decision
		return err
	case g.succeeded:
		return notYetUnsupported{err: err}
	}
	if g.streak++; g.streak == 1 {
		g.since = g.now()
	}
	if g.streak < g.answers || g.now().Sub(g.since) < g.span {
		return notYetUnsupported{err: err}
	}
	g.unsupported, g.probedAt = true, g.now()
	g.log.Warn().Str("evt", evListUnsupported).Int("answers", g.streak).Dur("over", g.now().Sub(g.since)).
		Msg("CP has no list endpoint: CP-side reconciliation is off for this process")
	return err
}

// notYetUnsupported is a 404/405 from the list that is not (yet) evidence
// of a CP without the endpoint: it carries the answer's text but does not
// wrap cp.ErrListUnsupported, so callers retry it as unknown.
type notYetUnsupported struct{ err error }

func (e notYetUnsupported) Error() string {
	return e.err.Error() + " (not yet read as a CP without the list endpoint)"
}
