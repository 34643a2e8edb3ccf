package cp

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ErrListUnsupported is reachable (errors.Is) from List's error when the CP
// answers 404 or 405: a CP without the list endpoint. Callers must then treat
// CP-side reconciliation as off, never the fleet as empty.
var ErrListUnsupported = errors.New("cp: list endpoint not supported by this CP")

// Class says what a caller should do about a failed CP call.
type Class int

const (
	// ClassRetry: transient (transport, 408, 425, 429, 5xx, 3xx, and
	// anything not listed below). Retry with backoff, honouring RetryAfter.
	ClassRetry Class = iota
	// ClassAmbiguous (provision only): the CP may have launched an instance
	// (transport error after sending, 2xx other than 201, 409, a 201 whose
	// body is unreadable or has no instance id). Adopt via List before
	// launching again, or a lost answer becomes a duplicate instance.
	ClassAmbiguous
	// ClassAuth: 401/403. Credentials may be mid-rotation: retry slowly and
	// log loudly; a silent auth failure stalls every stop.
	ClassAuth
	// ClassPermanent: retrying cannot help. Provision 400/422 (the request
	// body is frozen per generation, so a retry never differs), a 201 with
	// a malformed instance id, or an invalid id passed in by the caller.
	// Never produced by a terminate/status/list answer: those always retry.
	ClassPermanent
)

func (c Class) String() string {
	switch c {
	case ClassRetry:
		return "retry"
	case ClassAmbiguous:
		return "ambiguous"
	case ClassAuth:
		return "auth"
	case ClassPermanent:
		return "permanent"
	}
	return "class(" + strconv.Itoa(int(c)) + ")"
}

// maxMessage caps Error.Message: the CP's error field ends up in logs and in
// the workspace's last_error column.
const maxMessage = 200

// maxRetryAfter bounds a parsed Retry-After so a hostile value cannot
// overflow a Duration; callers apply their own, tighter bound.
const maxRetryAfter = 24 * time.Hour

// Error is every non-success outcome of a CP call.
type Error struct {
	Op         string        // "provision", "terminate", "status", "console", "list"
	StatusCode int           // 0: no HTTP answer (transport error, timeout, invalid id)
	Message    string        // the body's JSON "error" field only, or a placeholder; never raw body text
	RetryAfter time.Duration // parsed Retry-After; 0 when absent or invalid
	Class      Class
	Err        error // underlying cause; context errors stay reachable via errors.Is
}

// Error renders op, status and the structured message. It never contains the
// raw body (an upstream may echo the Authorization header) nor a request URL.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("cp: ")
	b.WriteString(e.Op)
	if e.StatusCode != 0 {
		b.WriteString(": status ")
		b.WriteString(strconv.Itoa(e.StatusCode))
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap exposes the cause (context.Canceled, ErrListUnsupported, ...).
func (e *Error) Unwrap() error { return e.Err }

func asError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

// IsPermanent reports whether err says retrying cannot help.
func IsPermanent(err error) bool { e, ok := asError(err); return ok && e.Class == ClassPermanent }

// IsAmbiguous reports whether a provision may have launched an instance
// despite failing: adopt via List before launching again.
func IsAmbiguous(err error) bool { e, ok := asError(err); return ok && e.Class == ClassAmbiguous }

// IsAuth reports a 401/403 from the CP.
func IsAuth(err error) bool { e, ok := asError(err); return ok && e.Class == ClassAuth }

// RetryAfter returns the CP's Retry-After hint carried by err, or 0.
func RetryAfter(err error) time.Duration {
	if e, ok := asError(err); ok {
		return e.RetryAfter
	}
	return 0
}

// StatusCode returns the HTTP status carried by err, or 0.
func StatusCode(err error) int {
	if e, ok := asError(err); ok {
		return e.StatusCode
	}
	return 0
}

// IsUnknownInstance reports a status or terminate 404 whose body carried a
// JSON error field: the CP itself said it does not know the instance. A bare
// 404 proves nothing (a proxy or a wrong route answers 404 too, and EC2 is
// eventually consistent), so clearing an instance on it would leak it.
func IsUnknownInstance(err error) bool {
	e, ok := asError(err)
	return ok && (e.Op == opStatus || e.Op == opTerminate) &&
		e.StatusCode == http.StatusNotFound && e.Message != "" &&
		!strings.HasPrefix(e.Message, "<") // placeholders: not the CP's own words
}

// classify maps an HTTP answer that is not the op's success to a Class.
func classify(op string, status int) Class {
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return ClassAuth
	case op != opProvision:
		// Every non-2xx on terminate must be retried: reading one as final
		// is how a stop got dropped while the instance ran on.
		return ClassRetry
	case status >= 200 && status < 300, status == http.StatusConflict:
		return ClassAmbiguous
	case status == http.StatusBadRequest, status == http.StatusUnprocessableEntity:
		return ClassPermanent
	}
	return ClassRetry
}

// parseRetryAfter reads delta-seconds or an HTTP-date; invalid → 0.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n > int64(maxRetryAfter/time.Second) {
			return maxRetryAfter
		}
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}
