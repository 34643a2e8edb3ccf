// Package safetext decides which runes may reach a reader's terminal or a
// text log as they are, and cuts text to a bound: the one copy of both
// for the whole module (jobs' validation, the CP client's error text,
// config's messages, enqueue's output). It imports nothing but the
// standard library, so every package may import it, internal/cp included
// (which stays free of the database and River); keep it that way.
//
// A review found the old checks ASCII-only: C1 controls (U+009B is a
// terminal's CSI), U+0085 (NEL, a line break to some viewers) and the
// bidi overrides (U+202E turns "exe.txt" into "txt.exe" on screen) went
// through untouched into error lines and `enqueue timeline` output.
package safetext

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Graphic reports whether r can be shown as it is: a letter, mark,
// number, punctuation, symbol or space separator (unicode.IsGraphic).
// Everything else is refused: C0 and C1 controls, format characters (the
// bidi embeddings, overrides and isolates U+202A–U+202E, U+2066–U+2069,
// zero-width joiners), line and paragraph separators, unassigned and
// private-use code points, and the replacement for invalid UTF-8.
func Graphic(r rune) bool { return r != utf8.RuneError && unicode.IsGraphic(r) }

// Replace returns s with every rune that is not Graphic (and every byte
// of invalid UTF-8) replaced by repl, so a message stays on one line and
// reads in the order it was written.
func Replace(s string, repl rune) string { return ReplaceKeeping(s, repl, "") }

// ReplaceKeeping is Replace leaving the runes of keep as they are: a
// multi-line text (a console log) keeps "\n\t" and loses everything else
// a terminal would act on.
func ReplaceKeeping(s string, repl rune, keep string) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		if !Graphic(r) && (r == utf8.RuneError || !strings.ContainsRune(keep, r)) {
			r = repl
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Truncate cuts s to at most n bytes without splitting a UTF-8 sequence
// and marks the cut with "…"; s of n bytes or fewer comes back as it is.
// A split sequence would reach a log or a quoted message as a stray
// invalid byte.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n] + "…"
}

// NeedsQuote reports whether s cannot stand bare as the value of a
// key=value pair in one line of text: it holds a space of any kind, a
// double quote or backslash, or a rune that is not printable
// (unicode.IsPrint: anything not Graphic, and spaces other than U+0020).
func NeedsQuote(s string) bool {
	for _, r := range s {
		if r == utf8.RuneError || r == '"' || r == '\\' || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return true
		}
	}
	return false
}

// Value returns s as it is, or Go-quoted when NeedsQuote: strconv.Quote
// escapes every rune that is not printable (\u202e, \x85, \x9b), so the
// reader sees what is there instead of what it does to the terminal.
func Value(s string) string {
	if NeedsQuote(s) {
		return strconv.Quote(s)
	}
	return s
}
