package config

import (
	"bytes"
	"errors"
	"flag"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestSet_FlagBeatsEnvBeatsDefault(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want time.Duration
	}{
		{"default", nil, nil, 5 * time.Second},
		{"env", map[string]string{"WAIT": "7s"}, nil, 7 * time.Second},
		{"flag over env", map[string]string{"WAIT": "7s"}, []string{"--wait", "9s"}, 9 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var d time.Duration
			s := New("t", env(tt.env))
			s.Duration(&d, "wait", "WAIT", 5*time.Second, "how long")
			require.NoError(t, s.Parse(tt.args))
			require.Equal(t, tt.want, d)
		})
	}
}

func TestSet_BadValuesNameTheVariableAndForm(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want []string
	}{
		{"env int", map[string]string{"N": "many"}, nil, []string{"N:", "an integer from 1 to 10"}},
		{"env int out of range", map[string]string{"N": "11"}, nil, []string{"N:", "an integer from 1 to 10"}},
		{"env duration", map[string]string{"WAIT": "soon"}, nil, []string{"WAIT:", "positive Go duration"}},
		{"env share", map[string]string{"SHARE": "2"}, nil, []string{"SHARE:", "a number from 0 to 1"}},
		{"env bool", map[string]string{"ON": "maybe"}, nil, []string{"ON:", "true or false"}},
		{"flag", nil, []string{"--n", "0"}, []string{"-n", "an integer from 1 to 10"}},
		{"unknown flag", nil, []string{"--nope"}, []string{"-nope", "not defined"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var n int
			var d time.Duration
			var f float64
			var b bool
			s := New("t", env(tt.env))
			s.Int(&n, "n", "N", 3, 1, 10, "count")
			s.Duration(&d, "wait", "WAIT", time.Second, "wait")
			s.Float(&f, "share", "SHARE", 0.2, 0, 1, "share")
			s.Bool(&b, "on", "ON", false, "on")
			err := s.Parse(tt.args)
			require.ErrorIs(t, err, ErrUsage)
			for _, w := range tt.want {
				require.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestSet_HelpNeverShowsASecret(t *testing.T) {
	t.Parallel()
	var pass string
	s := New("t", env(map[string]string{"PASS": "hunter2-secret"}))
	s.Secret(&pass, "pass", "PASS", "the password")
	require.True(t, errors.Is(s.Parse([]string{"-h"}), flag.ErrHelp))
	var out bytes.Buffer
	s.Usage(&out)
	require.Equal(t, "hunter2-secret", pass)
	require.NotContains(t, out.String(), "hunter2")
	require.Contains(t, out.String(), "PASS")
}

func TestIsLoopback(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]bool{
		"127.0.0.1:8080": true, "[::1]:8080": true, "localhost:1": true,
		"0.0.0.0:8080": false, ":8080": false, "10.0.0.1:80": false, "example.com:80": false, "garbage": false,
	} {
		require.Equal(t, want, IsLoopback(addr), addr)
	}
}

func TestSet_FlagErrorsStayOnOneLine(t *testing.T) {
	t.Parallel()
	s := New("t", env(nil))
	err := s.Parse([]string{"--evil\nlevel=error forged"})
	require.ErrorIs(t, err, ErrUsage)
	require.NotContains(t, err.Error(), "\n")
}

// Beyond ASCII: a C1 control (U+009B is a terminal's CSI), NEL and the
// bidi overrides and isolates must not reach stderr either.
func TestSet_FlagErrorsCarryNoNonGraphicRune(t *testing.T) {
	t.Parallel()
	for _, r := range []rune{0x85, 0x9b, 0x202a, 0x202e, 0x2066, 0x2069, 0x2028} {
		s := New("t", env(nil))
		err := s.Parse([]string{"--evil" + string(r) + "flag"})
		require.ErrorIs(t, err, ErrUsage)
		require.NotContains(t, err.Error(), string(r), "%U", r)
		require.Contains(t, err.Error(), "-evil?flag")
	}
}
