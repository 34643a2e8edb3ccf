package worker

import (
	"context"
	"errors"
	"github.com/molecule-ai/provision-worker/jobs"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/cp"
)

// scriptedList answers List from a script: 200, 404, 405 or 503.
type scriptedList struct {
	cp.API
	codes      []int
	tick       func() // the time one answer takes
	unscripted int    // calls after the script ran out
}

func (s *scriptedList) List(context.Context, cp.ListOptions) (cp.Page, error) {
	if len(s.codes) == 0 {
		s.unscripted++
		return cp.Page{}, errors.New("unscripted list call")
	}
	s.tick()
	code := s.codes[0]
	s.codes = s.codes[1:]
	switch code {
	case 200:
		return cp.Page{}, nil
	case 404, 405:
		return cp.Page{}, &cp.Error{Op: "list", StatusCode: code, Err: cp.ErrListUnsupported}
	}
	return cp.Page{}, &cp.Error{Op: "list", StatusCode: code}
}

func TestListGuard_DecidesUnsupportedOnlyOnEvidence(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		codes []int
		step  time.Duration // clock advance per answer
		want  bool          // the last answer reads as unsupported
	}{
		{"one 404", []int{404}, time.Minute, false},
		{"three 404s, too fast", []int{404, 404, 404}, time.Millisecond, false},
		{"three 404s over the span", []int{404, 405, 404}, time.Minute, true},
		{"a 503 breaks the streak", []int{404, 404, 503, 404}, time.Minute, false},
		{"a success ever: never unsupported", []int{200, 404, 404, 404, 404}, time.Minute, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clock := time.Unix(0, 0)
			api := &scriptedList{codes: tc.codes, tick: func() { clock = clock.Add(tc.step) }}
			g := newListGuard(api, jobs.Settings{ListUnsupportedAnswers: 3, ListUnsupportedSpan: 90 * time.Second}, zerolog.Nop()).(*listGuard)
			g.now = func() time.Time { return clock }
			var err error
			for range tc.codes {
				_, err = g.List(context.Background(), cp.ListOptions{})
			}
			require.Equal(t, tc.want, errors.Is(err, cp.ErrListUnsupported), "last error: %v", err)
			if tc.want { // decided: stays so without asking the CP again
				_, err = g.List(context.Background(), cp.ListOptions{})
				require.ErrorIs(t, err, cp.ErrListUnsupported)
			}
		})
	}
}

// A decision read from a CP gateway's 404s at start-up must not outlive
// them: once per ListUnsupportedReprobe one list call goes to the CP, and
// its success undoes the decision; between probes the CP is not asked.
func TestListGuard_RechecksTheDecisionOncePerReprobeInterval(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		probe   int
		decided bool // after the probe
	}{
		{"the probe succeeds: decision undone", 200, false},
		{"the probe answers 404: decision stands", 404, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clock := time.Unix(0, 0)
			api := &scriptedList{codes: []int{404, 404, 404}, tick: func() { clock = clock.Add(time.Minute) }}
			g := newListGuard(api, jobs.Settings{ListUnsupportedAnswers: 3, ListUnsupportedSpan: 90 * time.Second,
				ListUnsupportedReprobe: 5 * time.Minute}, zerolog.Nop()).(*listGuard)
			g.now = func() time.Time { return clock }
			list := func() error {
				_, err := g.List(context.Background(), cp.ListOptions{})
				return err
			}
			for range 3 {
				_ = list()
			}
			clock = clock.Add(4 * time.Minute)
			require.ErrorIs(t, list(), cp.ErrListUnsupported, "decided")
			require.Zero(t, api.unscripted, "asked the CP before the reprobe interval passed")

			clock = clock.Add(time.Minute)
			api.codes, api.tick = []int{tc.probe}, func() {}
			require.Equal(t, tc.decided, errors.Is(list(), cp.ErrListUnsupported))
			require.Empty(t, api.codes, "the CP was not asked once the interval passed")

			api.codes = []int{200}
			err := list()
			if tc.decided {
				require.ErrorIs(t, err, cp.ErrListUnsupported)
				require.Equal(t, []int{200}, api.codes, "asked again right after a failed probe")
				return
			}
			require.NoError(t, err)
			require.Empty(t, api.codes)
		})
	}
}
