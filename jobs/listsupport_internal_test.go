package jobs

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/cp"
)

// scriptedList answers List from a script: 200, 404, 405 or 503.
type scriptedList struct {
	cp.API
	codes []int
	tick  func() // the time one answer takes
}

func (s *scriptedList) List(context.Context, cp.ListOptions) (cp.Page, error) {
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
			clock := time.Unix(0, 0)
			api := &scriptedList{codes: tc.codes, tick: func() { clock = clock.Add(tc.step) }}
			g := newListGuard(api, Settings{ListUnsupportedAnswers: 3, ListUnsupportedSpan: 90 * time.Second}, zerolog.Nop()).(*listGuard)
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
