package cpfake

import (
	"net/http"
	"time"

	"github.com/molecule-ai/provision-worker/internal/cp"
)

// Dialect is how the fake writes its answers. The real CP is written by
// another team: a correct CP that encoded an empty list page as null (what
// Go's encoding/json writes for a nil slice) once left stops retrying for
// days, because this fake only ever wrote []. Every contract test and one
// chaos run go through each dialect.
type Dialect int

const (
	// DialectFull writes every optional field, empty lists as [], and
	// Content-Type: application/json.
	DialectFull Dialect = iota
	// DialectPlainGo answers as a plain Go server would: nil slices as
	// null, no optional fields (no private_ip, launched_at or workspace_id
	// in a 201, no next_cursor on the last page), 204 No Content on a
	// terminate, no Content-Type of its own (Go sniffs text/plain), and
	// launched_at in whole seconds with a numeric offset.
	DialectPlainGo
)

// String is the dialect's name in flags and test names.
func (d Dialect) String() string {
	if d == DialectPlainGo {
		return "plain-go"
	}
	return "full"
}

// ParseDialect reads a String form.
func ParseDialect(s string) (Dialect, bool) {
	for _, d := range []Dialect{DialectFull, DialectPlainGo} {
		if s == d.String() {
			return d, true
		}
	}
	return 0, false
}

// plainZone is where the plain dialect's clock lives: an offset, not Z.
var plainZone = time.FixedZone("", -5*3600-30*60)

// plainInstance is a list entry with only the contract's fields.
type plainInstance struct {
	WorkspaceID string `json:"workspace_id"`
	InstanceID  string `json:"instance_id"`
	State       string `json:"state"`
	LaunchedAt  string `json:"launched_at"`
}

func (x *exchange) replyProvision(inst cp.Instance) {
	if x.dialect != DialectPlainGo {
		x.reply(http.StatusCreated, inst)
		return
	}
	x.reply(http.StatusCreated, struct {
		InstanceID string `json:"instance_id"`
		State      string `json:"state"`
	}{inst.InstanceID, inst.State})
}

func (x *exchange) replyTerminated() {
	if x.dialect != DialectPlainGo {
		x.reply(http.StatusOK, struct{}{})
		return
	}
	x.reply(http.StatusNoContent, nil)
}

func (x *exchange) replyPage(page []cp.Instance, next string) {
	if x.dialect != DialectPlainGo {
		if page == nil {
			page = []cp.Instance{}
		}
		x.reply(http.StatusOK, map[string]any{"instances": page, "next_cursor": next})
		return
	}
	var out struct {
		Instances  []plainInstance `json:"instances"` // nil when empty: encodes as null
		NextCursor string          `json:"next_cursor,omitempty"`
	}
	for _, in := range page {
		out.Instances = append(out.Instances, plainInstance{in.WorkspaceID, in.InstanceID, in.State,
			in.LaunchedAt.In(plainZone).Format("2006-01-02T15:04:05-07:00")})
	}
	out.NextCursor = next
	x.reply(http.StatusOK, out)
}
