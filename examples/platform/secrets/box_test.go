package secrets_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"example.com/platform/secrets"
)

const ws = "6f1c2b1e-1d7e-4c39-9a53-0a4d3c8f2b10"

func TestBox_RoundTrips(t *testing.T) {
	box, err := secrets.NewBox(secrets.NewKey())
	require.NoError(t, err)
	sealed := box.Seal(ws, "API_KEY", "hunter2")
	require.NotContains(t, string(sealed), "hunter2")
	got, err := box.Open(ws, "API_KEY", sealed, secrets.Version)
	require.NoError(t, err)
	require.Equal(t, "hunter2", got)
	require.NotEqual(t, sealed, box.Seal(ws, "API_KEY", "hunter2"), "a fresh nonce each time")
}

func TestBox_RefusesWhatItDidNotSealForThatRow(t *testing.T) {
	box, err := secrets.NewBox(secrets.NewKey())
	require.NoError(t, err)
	other, err := secrets.NewBox(secrets.NewKey())
	require.NoError(t, err)
	sealed := box.Seal(ws, "API_KEY", "hunter2")
	tampered := append([]byte(nil), sealed...)
	tampered[len(tampered)-1] ^= 1
	for name, open := range map[string]func() (string, error){
		"another workspace": func() (string, error) {
			return box.Open("0b8a1f7e-1d7e-4c39-9a53-0a4d3c8f2b10", "API_KEY", sealed, secrets.Version)
		},
		"another key":     func() (string, error) { return box.Open(ws, "DB_PASS", sealed, secrets.Version) },
		"another box key": func() (string, error) { return other.Open(ws, "API_KEY", sealed, secrets.Version) },
		"tampered":        func() (string, error) { return box.Open(ws, "API_KEY", tampered, secrets.Version) },
		"unknown version": func() (string, error) { return box.Open(ws, "API_KEY", sealed, 2) },
		"truncated":       func() (string, error) { return box.Open(ws, "API_KEY", sealed[:5], secrets.Version) },
	} {
		t.Run(name, func(t *testing.T) {
			got, err := open()
			require.ErrorIs(t, err, secrets.ErrDecrypt)
			require.Empty(t, got)
		})
	}
}

func TestNewBox_RefusesBadKeysWithoutQuotingThem(t *testing.T) {
	for name, key := range map[string]string{
		"empty":     "",
		"not b64":   "not-base64-secret!!",
		"too short": "c2hvcnQtc2VjcmV0",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := secrets.NewBox(key)
			require.ErrorIs(t, err, secrets.ErrKey)
			if key != "" {
				require.False(t, strings.Contains(err.Error(), key))
			}
		})
	}
}
