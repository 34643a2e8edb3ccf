package bench

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/testdb"
)

// The ceiling is only a ceiling if every job really committed its row
// change: its check fails on a row left untouched or updated twice.
func TestCeiling_EveryJobUpdatesItsRowOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, _ := testdb.NewPool(t)
	d, err := ceilingThroughput(ctx, nil, pool, 7)
	require.NoError(t, err)
	require.Positive(t, d)
	var completed int
	require.NoError(t, pool.QueryRow(ctx, benchStore.Q(`
		SELECT count(*) FROM {schema}.river_job WHERE kind = 'bench_ceiling' AND state = 'completed'`)).Scan(&completed))
	require.Equal(t, 14, completed)

	_, err = pool.Exec(ctx, benchStore.Q(`UPDATE {schema}.bench_ceiling SET done = 2 WHERE id = 3`))
	require.NoError(t, err)
	require.ErrorContains(t, checkCeilingRows(ctx, pool, 14), "13 updated exactly once")
	_, err = pool.Exec(ctx, benchStore.Q(`UPDATE {schema}.bench_ceiling SET done = 1 WHERE id = 3`))
	require.NoError(t, err)
	require.ErrorContains(t, checkCeilingRows(ctx, pool, 15), "14 rows")
}

func TestMedian(t *testing.T) {
	cases := []struct {
		in   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
	}
	for _, c := range cases {
		require.Equal(t, c.want, median(c.in), "%v", c.in)
	}
	require.True(t, median(nil) != median(nil), "empty: NaN")
}

func TestSizeLabel(t *testing.T) {
	for n, want := range map[int]string{300: "300", 3000: "3k", 10_000: "10k", 100_000: "100k", 1_000_000: "1m", 1500: "1500"} {
		require.Equal(t, want, sizeLabel(n))
	}
}
