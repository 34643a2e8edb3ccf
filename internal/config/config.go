// Package config binds each setting of a command to a flag and an env
// var, once, so --help, the README table and the parser cannot drift: a
// setting is declared with its flag, env var, default and help, the env
// var (when set) replaces the default, and a flag given on the command
// line wins. A malformed value is an error that names the variable and
// the expected form, before anything starts.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/molecule-ai/provision-worker/internal/safetext"
)

// ErrUsage marks bad input: callers exit 2.
var ErrUsage = errors.New("invalid input")

// Set is one command's settings.
type Set struct {
	fs      *flag.FlagSet
	getenv  func(string) string
	entries []entry
	errs    []error
}

type entry struct {
	flag, env, def, help string
}

// New starts a set for command name; getenv is os.Getenv in production.
func New(name string, getenv func(string) string) *Set {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return &Set{fs: fs, getenv: getenv}
}

// FlagSet exposes the underlying flags (for positional arguments).
func (s *Set) FlagSet() *flag.FlagSet { return s.fs }

// add registers v under flag and env, applying env's value to v's default.
// An empty flag name registers no flag: the setting is read from env only.
func (s *Set) add(v flag.Value, name, env, help, form string) {
	s.entries = append(s.entries, entry{flag: name, env: env, def: v.String(), help: help})
	if env != "" {
		if raw := s.getenv(env); raw != "" {
			if err := v.Set(raw); err != nil {
				s.errs = append(s.errs, fmt.Errorf("%w: %s: want %s, got %q", ErrUsage, env, form, clip(raw)))
			}
		}
	}
	if name != "" {
		s.fs.Var(v, name, help)
	}
}

// String binds a string setting.
func (s *Set) String(p *string, name, env, def, help string) {
	*p = def
	s.add((*stringValue)(p), name, env, help, "a string")
}

// Secret binds a string whose value must never be printed: --help shows
// its flag and env var, never a value.
func (s *Set) Secret(p *string, name, env, help string) {
	s.add((*secretValue)(p), name, env, help, "a string")
}

// EnvString binds a string read from env only, never from a flag: for a
// value that holds a secret (DATABASE_URL carries the Postgres
// password), since a command line is shown by ps to every user of the
// machine and kept in shell histories.
func (s *Set) EnvString(p *string, env, help string) {
	s.add((*stringValue)(p), "", env, help, "a string")
}

// EnvSecret binds a secret read from env only (see EnvString); --help
// shows its env var, never a value.
func (s *Set) EnvSecret(p *string, env, help string) {
	s.add((*secretValue)(p), "", env, help, "a string")
}

// Int binds an integer in [lo, hi].
func (s *Set) Int(p *int, name, env string, def, lo, hi int, help string) {
	*p = def
	s.add(&intValue{p: p, lo: lo, hi: hi}, name, env, help, fmt.Sprintf("an integer from %d to %d", lo, hi))
}

// Float binds a number in [lo, hi].
func (s *Set) Float(p *float64, name, env string, def, lo, hi float64, help string) {
	*p = def
	s.add(&floatValue{p: p, lo: lo, hi: hi}, name, env, help, fmt.Sprintf("a number from %g to %g", lo, hi))
}

// Duration binds a positive Go duration.
func (s *Set) Duration(p *time.Duration, name, env string, def time.Duration, help string) {
	*p = def
	s.add((*durationValue)(p), name, env, help, "a positive Go duration like 30s or 5m")
}

// Bool binds a boolean.
func (s *Set) Bool(p *bool, name, env string, def bool, help string) {
	*p = def
	s.add((*boolValue)(p), name, env, help, "true or false")
}

// Parse applies the command line. It returns flag.ErrHelp for -h/--help
// and errors wrapping ErrUsage for bad values.
func (s *Set) Parse(args []string) error {
	if err := s.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %s", ErrUsage, printable(dropFlagValue(err.Error())))
	}
	if len(s.errs) > 0 {
		return oneLine(s.errs)
	}
	return nil
}

// NoArgs refuses positional arguments left after the flags, without
// repeating them: a review saw `unexpected argument "API_KEY=sk-live-…"`
// echoed to stderr (and so to CI logs) when a secret was pasted in the
// wrong place.
func (s *Set) NoArgs() error {
	if n := s.fs.NArg(); n > 0 {
		return fmt.Errorf("%w: %d unexpected positional argument(s), not repeated here (they may hold a secret); settings are --flags or env vars", ErrUsage, n)
	}
	return nil
}

// flagValueQuote matches the flag package's `invalid value "…" for flag
// -name: ` (and its boolean variant).
var flagValueQuote = regexp.MustCompile(`^invalid (?:boolean )?value "(?:[^"\\]|\\.)*" for (?:flag )?(-\S+): `)

// dropFlagValue removes the value the flag package quotes in its error: a
// flag may carry a secret (enqueue's --env K=V), and the message goes to
// stderr and CI logs. The flag's name and the expected form remain.
func dropFlagValue(msg string) string {
	return flagValueQuote.ReplaceAllString(msg, "flag $1: ")
}

// printable replaces every non-graphic rune: flag's own messages quote an
// unknown flag's name as typed, and a newline in it would forge a second
// line on stderr (found by FuzzParseWorker); a C1 control or a bidi
// override would do the same to a terminal.
func printable(msg string) string { return safetext.Replace(msg, '?') }

// oneLine joins several setting errors on one line (errors.Join uses
// newlines, and callers print the error as a single stderr line).
type oneLine []error

func (e oneLine) Error() string {
	parts := make([]string, len(e))
	for i, err := range e {
		parts[i] = err.Error()
	}
	return strings.Join(parts, "; ")
}

func (e oneLine) Unwrap() []error { return e }

// Usage writes every setting with its flag, env var and default; an
// env-only setting shows as "NAME  (env only)".
func (s *Set) Usage(w io.Writer) {
	for _, e := range s.entries {
		switch {
		case e.flag == "":
			fmt.Fprintf(w, "  %s  (env only)", e.env)
		default:
			fmt.Fprintf(w, "  --%s", e.flag)
			if e.env != "" {
				fmt.Fprintf(w, "  (env %s)", e.env)
			}
		}
		if e.def != "" {
			fmt.Fprintf(w, "  [default %s]", e.def)
		}
		fmt.Fprintf(w, "\n        %s\n", e.help)
	}
}

// Entries lists the settings as (flag, env, default, help) rows, for the
// README check; flag is "" for an env-only setting.
func (s *Set) Entries() [][4]string {
	out := make([][4]string, 0, len(s.entries))
	for _, e := range s.entries {
		out = append(out, [4]string{e.flag, e.env, e.def, e.help})
	}
	return out
}

// IsLoopback reports whether addr (host:port) names a loopback IP or
// "localhost": the only addresses an unauthenticated UI (or the CP
// simulator) may listen on.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

type stringValue string

func (v *stringValue) String() string     { return string(*v) }
func (v *stringValue) Set(s string) error { *v = stringValue(s); return nil }

type secretValue string

func (v *secretValue) String() string {
	if v == nil || *v == "" {
		return ""
	}
	return "(set)"
}
func (v *secretValue) Set(s string) error { *v = secretValue(s); return nil }

type intValue struct {
	p      *int
	lo, hi int
}

func (v *intValue) String() string {
	if v.p == nil {
		return ""
	}
	return strconv.Itoa(*v.p)
}

func (v *intValue) Set(s string) error {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < v.lo || n > v.hi {
		return fmt.Errorf("want an integer from %d to %d", v.lo, v.hi)
	}
	*v.p = n
	return nil
}

type floatValue struct {
	p      *float64
	lo, hi float64
}

func (v *floatValue) String() string {
	if v.p == nil {
		return ""
	}
	return strconv.FormatFloat(*v.p, 'g', -1, 64)
}

func (v *floatValue) Set(s string) error {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || f < v.lo || f > v.hi || f != f {
		return fmt.Errorf("want a number from %g to %g", v.lo, v.hi)
	}
	*v.p = f
	return nil
}

type durationValue time.Duration

func (v *durationValue) String() string { return time.Duration(*v).String() }

func (v *durationValue) Set(s string) error {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil || d <= 0 {
		return errors.New("want a positive Go duration like 30s or 5m")
	}
	*v = durationValue(d)
	return nil
}

type boolValue bool

func (v *boolValue) String() string { return strconv.FormatBool(bool(*v)) }

func (v *boolValue) Set(s string) error {
	b, err := strconv.ParseBool(strings.TrimSpace(s))
	if err != nil {
		return errors.New("want true or false")
	}
	*v = boolValue(b)
	return nil
}

// IsBoolFlag lets --flag stand for --flag=true.
func (v *boolValue) IsBoolFlag() bool { return true }
