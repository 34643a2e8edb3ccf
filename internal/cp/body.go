package cp

import (
	"encoding/json"
	"fmt"

	"github.com/molecule-ai/provision-worker/internal/safetext"
)

// unstructuredPrefix starts the placeholder Message for a body without a
// JSON error field. Placeholders start with "<" so IsUnknownInstance can
// tell them from a message the CP wrote.
const unstructuredPrefix = "<unstructured body"

// errorField returns the body's JSON "error" string (secrets replaced,
// non-graphic runes replaced, truncated) or a placeholder naming only the
// body's size. The raw body is never used: an upstream misconfiguration
// once echoed request headers, bearer token included, into its error page,
// and errors end up in logs and in the workspace's last_error. The error
// field itself can echo them too (and a provision's env values), so every
// form of every secret in it is replaced before the message is cut (a cut
// first could leave a secret's prefix behind).
func errorField(body []byte, sec secrets) string {
	var v struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &v) == nil {
		if msg := scrub(v.Error, sec.forms(), maxMessage); msg != "" {
			return safetext.Truncate(msg, maxMessage)
		}
	}
	return fmt.Sprintf("%s, %d bytes>", unstructuredPrefix, len(body))
}

// malformed is the error for a 2xx body that does not hold what the
// contract promises. A malformed success is a failure, never an empty one:
// an empty list read as "nothing runs" would stop the sweep from seeing a
// leak, and an empty state read as "not running" would restart a workspace.
func malformed(op string, status int, what string, class Class) *Error {
	return &Error{Op: op, StatusCode: status, Class: class, Message: what}
}
