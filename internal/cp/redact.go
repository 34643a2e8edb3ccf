package cp

import (
	"encoding/base64"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/molecule-ai/provision-worker/internal/safetext"
)

// redacted replaces every secret form found in a CP message.
const redacted = "[redacted]"

// MinRedactLen is the shortest workspace env value that is redacted from
// CP error messages. A shorter value ("1", "on", "eu") would turn most
// messages into a row of "[redacted]" while hiding nothing: a secret of
// three bytes or fewer is guessed in a few million tries, so it is not a
// secret and is never treated as one. The CP credentials are redacted
// whatever their length.
const MinRedactLen = 4

// secrets is what one failed call's error message must not carry: the
// CP credentials, and the env values of the provision request that got
// the answer (a CP answering 422 with "invalid env: K='value'" once put
// a workspace's secret into last_error, river_job.errors and the log).
type secrets struct {
	credentials []string
	env         map[string]string
}

// forms lists every form of every secret a message could carry, longest
// first, so that at any position the longest match wins and no secret
// that contains another is left half-replaced.
func (s secrets) forms() []string {
	seen := map[string]bool{}
	var out []string
	add := func(secret string, always bool) {
		if len(secret) == 0 || (!always && len(secret) < MinRedactLen) {
			return
		}
		for _, f := range encodings(secret) {
			if !seen[f] && (f == secret || len(f) >= MinRedactLen) {
				seen[f] = true
				out = append(out, f)
			}
		}
	}
	for _, c := range s.credentials {
		add(c, true)
	}
	for _, v := range s.env {
		add(v, false)
	}
	slices.SortStableFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out
}

// encodings returns the secret as it is and as an upstream may echo it:
// URL-encoded (query and path forms), JSON-escaped (a CP quoting the
// request body inside its error), and base64 in all four alphabets, both
// whole and as the run of characters it yields at each of the three
// alignments inside a longer base64 text ("K=value" encoded together).
func encodings(secret string) []string {
	out := []string{secret, url.QueryEscape(secret), url.PathEscape(secret)}
	if b, err := json.Marshal(secret); err == nil {
		out = append(out, string(b[1:len(b)-1]))
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		out = append(out, enc.EncodeToString([]byte(secret)))
	}
	for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
		for shift := range 3 {
			out = append(out, base64Core(enc, secret, shift))
		}
	}
	return out
}

// base64Core is the part of enc's output fixed by secret alone when it
// starts shift bytes into a 3-byte group: characters whose six bits all
// come from the secret (the ones at either edge mix in its neighbours).
func base64Core(enc *base64.Encoding, secret string, shift int) string {
	s := enc.EncodeToString(append(make([]byte, shift), secret...))
	from := (8*shift + 5) / 6
	to := (8 * (shift + len(secret))) / 6
	if to <= from {
		return ""
	}
	return s[from:to]
}

// scrub returns s with every form replaced by "[redacted]" and every
// rune that is not graphic replaced by a space, dropping leading spaces
// and '<' (placeholders start with '<'). It stops once the output is
// longer than limit bytes, so a megabyte of error text costs no more
// than a short one. Secrets are matched against the text as the CP sent
// it, before anything is replaced or cut, so no cut leaves a secret's
// prefix behind.
func scrub(s string, forms []string, limit int) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() <= limit; {
		if n := longestMatch(s[i:], forms); n > 0 {
			b.WriteString(redacted)
			i += n
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		if !safetext.Graphic(r) { // C0/C1 controls, bidi overrides, invalid UTF-8
			r = ' '
		}
		if b.Len() == 0 && (r == ' ' || r == '<' || unicode.IsSpace(r)) {
			continue
		}
		b.WriteRune(r)
	}
	return strings.TrimRightFunc(b.String(), unicode.IsSpace)
}

// longestMatch is the length of the first (longest) form s starts with.
func longestMatch(s string, forms []string) int {
	for _, f := range forms {
		if strings.HasPrefix(s, f) {
			return len(f)
		}
	}
	return 0
}
