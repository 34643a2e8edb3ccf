package worker

import (
	"errors"
	"testing"

	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"
)

func TestStuckStreakReached(t *testing.T) {
	t.Parallel()
	const list = "cp: list: status 200: malformed list body"
	errs := func(msgs ...string) []rivertype.AttemptError {
		out := make([]rivertype.AttemptError, len(msgs))
		for i, m := range msgs {
			out[i] = rivertype.AttemptError{Attempt: i + 1, Error: m}
		}
		return out
	}
	tests := []struct {
		name  string
		prior []rivertype.AttemptError
		err   string
		want  bool
	}{
		{"first failure", nil, list, false},
		{"one short", errs(list), list, false},
		{"third in a row", errs(list, list), list, true},
		{"fourth in a row: already said", errs(list, list, list), list, false},
		{"streak after a different error", errs("cp: terminate: status 500", list, list), list, true},
		{"broken streak", errs(list, "cp: terminate: status 500"), list, false},
		{"numbers differ, same class", errs("cp: terminate: status 502: <unstructured body, 19 bytes>", "cp: terminate: status 503: <unstructured body, 7 bytes>"),
			"cp: terminate: status 504: <unstructured body, 123 bytes>", true},
		{"rescued attempt breaks the streak", errs(list, "Stuck job rescued by Rescuer"), list, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			job := &rivertype.JobRow{Attempt: len(tt.prior) + 1, Errors: tt.prior}
			require.Equal(t, tt.want, stuckStreakReached(job, errors.New(tt.err), 3))
		})
	}
	require.False(t, stuckStreakReached(&rivertype.JobRow{}, errors.New(list), 0), "0 turns it off")
}
