package jobs

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/molecule-ai/provision-worker/internal/cp"
)

// evListUnsupported is logged once, when a process decides its CP has no
// list endpoint.
const evListUnsupported = "cp.list_unsupported_decided"

// listGuard decides once per process, on evidence, that the CP has no list
// endpoint: ListUnsupportedAnswers 404/405 answers in a row spanning
// ListUnsupportedSpan, and no list answer ever succeeded. Until then a
// 404/405 is an ordinary failure, retried: a proxy or a CP deploy answers
// 404 for a moment too, and a terminate that read one such answer as
// "unsupported" stopped without confirming that nothing ran. Once
// decided, List answers ErrListUnsupported without asking the CP.
type listGuard struct {
	cp.API
	answers int
	span    time.Duration
	now     func() time.Time
	log     zerolog.Logger

	mu          sync.Mutex
	succeeded   bool
	unsupported bool
	streak      int
	since       time.Time
}

func newListGuard(api cp.API, s Settings, log zerolog.Logger) cp.API {
	if g, ok := api.(*listGuard); ok {
		return g
	}
	return &listGuard{API: api, answers: s.ListUnsupportedAnswers, span: s.ListUnsupportedSpan, now: time.Now, log: log}
}

// errUnsupportedDecided is what List answers once the process decided.
var errUnsupportedDecided = &cp.Error{Op: "list", Message: "decided earlier in this process", Err: cp.ErrListUnsupported}

// List implements cp.API.
func (g *listGuard) List(ctx context.Context, o cp.ListOptions) (cp.Page, error) {
	g.mu.Lock()
	decided := g.unsupported
	g.mu.Unlock()
	if decided {
		return cp.Page{}, errUnsupportedDecided
	}
	p, err := g.API.List(ctx, o)
	return p, g.judge(err)
}

// judge records one list outcome and returns the error callers see.
func (g *listGuard) judge(err error) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case err == nil:
		g.succeeded, g.streak = true, 0
		return nil
	case !errors.Is(err, cp.ErrListUnsupported):
		g.streak = 0
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
	g.unsupported = true
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
