package safetext_test

import (
	"go/build"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/safetext"
)

// Runes the review found passing the old ASCII-only checks, and their
// C0 neighbours.
var hostile = []struct {
	name string
	r    rune
}{
	{"newline", '\n'}, {"carriage return", '\r'}, {"escape", 0x1b}, {"delete", 0x7f},
	{"C1 NEL U+0085", 0x85}, {"C1 CSI U+009B", 0x9b},
	{"LRE U+202A", 0x202a}, {"RLE U+202B", 0x202b}, {"PDF U+202C", 0x202c}, {"LRO U+202D", 0x202d}, {"RLO U+202E", 0x202e},
	{"LRI U+2066", 0x2066}, {"RLI U+2067", 0x2067}, {"FSI U+2068", 0x2068}, {"PDI U+2069", 0x2069},
	{"line separator U+2028", 0x2028}, {"zero width joiner U+200D", 0x200d},
}

func TestReplace_ReplacesEveryNonGraphicRune(t *testing.T) {
	t.Parallel()
	for _, tc := range hostile {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := safetext.Replace("a"+string(tc.r)+"b", '?')
			require.Equal(t, "a?b", got)
		})
	}
	require.Equal(t, "a?b", safetext.Replace("a\xffb", '?'), "invalid UTF-8")
	require.Equal(t, "naïve café ✓ 日本", safetext.Replace("naïve café ✓ 日本", '?'), "graphic runes stay")
}

func TestValue_QuotesNonGraphicRunesAndSpaces(t *testing.T) {
	t.Parallel()
	for _, tc := range hostile {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := safetext.Value("a" + string(tc.r) + "b")
			require.True(t, safetext.NeedsQuote("a"+string(tc.r)+"b"))
			require.Equal(t, byte('"'), got[0], got)
			for _, r := range got {
				require.True(t, safetext.Graphic(r), "%q still holds %U", got, r)
			}
		})
	}
	for _, s := range []string{"a b", "a\u00a0b", "a\u3000b", `a"b`, `a\b`, "a\xffb"} {
		require.Equal(t, byte('"'), safetext.Value(s)[0], "%q must be quoted", s)
	}
	require.Equal(t, "i-0123abcd", safetext.Value("i-0123abcd"))
	require.Equal(t, "café", safetext.Value("café"))
}

// ReplaceKeeping keeps only the runes asked for; every other
// non-graphic rune (and invalid UTF-8) is still replaced.
func TestReplaceKeeping_KeepsOnlyTheRunesAskedFor(t *testing.T) {
	for _, tc := range hostile {
		t.Run(tc.name, func(t *testing.T) {
			want := "a?b"
			if tc.r == '\n' {
				want = "a\nb"
			}
			require.Equal(t, want, safetext.ReplaceKeeping("a"+string(tc.r)+"b", '?', "\n\t"))
		})
	}
	require.Equal(t, "a\tb", safetext.ReplaceKeeping("a\tb", '?', "\n\t"))
	require.Equal(t, "a?b", safetext.ReplaceKeeping("a\xffb", '?', "\n\t\uFFFD"), "invalid UTF-8 is never kept")
}

func TestTruncate_CutsAtARuneBoundary(t *testing.T) {
	for _, tc := range []struct {
		name, s string
		n       int
		want    string
	}{
		{"short stays", "abc", 3, "abc"},
		{"ascii cut", "abcdef", 3, "abc…"},
		{"inside a two-byte rune", "aé", 2, "a…"},
		{"after a two-byte rune", "aéb", 3, "aé…"},
		{"inside a four-byte rune", "a😀", 3, "a…"},
		{"nothing fits", "😀", 2, "…"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, safetext.Truncate(tc.s, tc.n))
		})
	}
}

// internal/cp imports this package, and stays free of the database and
// River: safetext imports the standard library only.
func TestImportsOnlyTheStandardLibrary(t *testing.T) {
	pkg, err := build.ImportDir(".", 0)
	require.NoError(t, err)
	for _, imp := range pkg.Imports {
		require.False(t, strings.Contains(strings.Split(imp, "/")[0], "."), "safetext imports %s", imp)
	}
}
