package cp

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// ProvisionRequest is one provision call. The worker freezes it per
// generation, so a retry sends exactly the same body and key.
type ProvisionRequest struct {
	WorkspaceID    string
	Runtime        string
	PlatformURL    string
	Tier           int
	Env            map[string]string // may hold secrets: never logged here
	IdempotencyKey string            // sent as Idempotency-Key when non-empty
}

// Instance is one CP-managed EC2 instance.
type Instance struct {
	WorkspaceID string    `json:"workspace_id"`
	InstanceID  string    `json:"instance_id"`
	State       string    `json:"state"`
	PrivateIP   string    `json:"private_ip,omitempty"`
	LaunchedAt  time.Time `json:"launched_at"`
}

// Live reports whether the instance still runs or may run (anything but
// shutting-down / terminated; "stopped" still holds a volume and an id).
func (i Instance) Live() bool {
	return i.State != "shutting-down" && i.State != "terminated"
}

// ListOptions selects one page of List.
type ListOptions struct {
	WorkspaceID string // optional filter
	Cursor      string // from the previous Page; "" for the first
	Limit       int    // default 500
}

// Page is one page of the CP's instances.
type Page struct {
	Instances  []Instance
	NextCursor string // "" on the last page
}

const defaultListLimit = 500

// Start provisions the workspace. Success is 201 only. A 201 whose state is
// shutting-down or terminated is returned with a nil error: the CP did
// answer, and the caller (which must own every id the CP hands out) decides
// not to accept it. See Class for what each failure means.
func (c *Client) Start(ctx context.Context, req ProvisionRequest) (Instance, error) {
	if !ValidWorkspaceID(req.WorkspaceID) {
		return Instance{}, invalidArg(opProvision, "invalid workspace id")
	}
	env := req.Env
	if env == nil {
		env = map[string]string{}
	}
	body, err := json.Marshal(struct {
		OrgID       string            `json:"org_id"`
		WorkspaceID string            `json:"workspace_id"`
		Runtime     string            `json:"runtime"`
		Tier        int               `json:"tier"`
		PlatformURL string            `json:"platform_url"`
		Env         map[string]string `json:"env"`
	}{c.cfg.OrgID, req.WorkspaceID, req.Runtime, req.Tier, req.PlatformURL, env})
	if err != nil {
		return Instance{}, invalidArg(opProvision, "cannot encode request")
	}
	a, err := c.do(ctx, call{op: opProvision, method: http.MethodPost, path: "/cp/workspaces/provision",
		body: body, limit: capJSON, idemKey: req.IdempotencyKey})
	if err != nil {
		return Instance{}, err
	}
	if a.status != http.StatusCreated {
		return Instance{}, c.failureWithEnv(opProvision, a, req.Env)
	}
	return parseProvision(req.WorkspaceID, a.body)
}

// parseProvision reads a 201. A garbled body or a missing id may still stand
// for a launched instance (ambiguous: adopt via List); a malformed id is
// refused outright so it never reaches a later URL.
func parseProvision(workspaceID string, body []byte) (Instance, error) {
	var out struct {
		InstanceID string `json:"instance_id"`
		PrivateIP  string `json:"private_ip"`
		State      string `json:"state"`
		LaunchedAt string `json:"launched_at"`
	}
	if json.Unmarshal(body, &out) != nil {
		return Instance{}, malformed(opProvision, http.StatusCreated, "malformed JSON in 201 body", ClassAmbiguous)
	}
	if out.InstanceID == "" {
		return Instance{}, malformed(opProvision, http.StatusCreated, "201 without instance id", ClassAmbiguous)
	}
	if !ValidInstanceID(out.InstanceID) {
		return Instance{}, malformed(opProvision, http.StatusCreated, "invalid instance id from CP", ClassPermanent)
	}
	inst := Instance{WorkspaceID: workspaceID, InstanceID: out.InstanceID, State: cleanState(out.State), PrivateIP: out.PrivateIP}
	// launched_at is not part of the provision contract; use it when present.
	inst.LaunchedAt, _ = time.Parse(time.RFC3339Nano, out.LaunchedAt)
	return inst, nil
}

// Stop asks the CP to terminate the instance. Only a 2xx is success: the
// reference client once read a 5xx as done, marked the row removed, and the
// instance ran on with nothing left pointing at it. A 404 is a failure too
// (see IsUnknownInstance for how to confirm it).
func (c *Client) Stop(ctx context.Context, workspaceID, instanceID string) error {
	if err := checkIDs(opTerminate, workspaceID, instanceID); err != nil {
		return err
	}
	a, err := c.do(ctx, call{op: opTerminate, method: http.MethodDelete,
		path:  "/cp/workspaces/" + url.PathEscape(workspaceID),
		query: url.Values{"instance_id": {instanceID}}, limit: capTerminate})
	if err != nil {
		return err
	}
	if !statusOK(a.status) {
		return c.failure(opTerminate, a)
	}
	return nil
}

// Status returns the instance's raw state ("pending" is not gone, so a
// terminate confirms with this, not IsRunning). A 2xx without a state is an
// error: an empty state must not read as "not running".
func (c *Client) Status(ctx context.Context, workspaceID, instanceID string) (string, error) {
	if err := checkIDs(opStatus, workspaceID, instanceID); err != nil {
		return "", err
	}
	a, err := c.do(ctx, call{op: opStatus, method: http.MethodGet,
		path:  "/cp/workspaces/" + url.PathEscape(workspaceID) + "/status",
		query: url.Values{"instance_id": {instanceID}}, limit: capJSON})
	if err != nil {
		return "", err
	}
	if !statusOK(a.status) {
		return "", c.failure(opStatus, a)
	}
	var out struct {
		State string `json:"state"`
	}
	if json.Unmarshal(a.body, &out) != nil || out.State == "" {
		return "", malformed(opStatus, a.status, "malformed status body", ClassRetry)
	}
	return out.State, nil
}

// IsRunning keeps the reference contract: no instance → (false, nil)
// without a request; any failure → (true, err), because reading a CP blip as
// "dead" would stampede every workspace into a restart; 2xx →
// (state == "running", nil).
func (c *Client) IsRunning(ctx context.Context, workspaceID, instanceID string) (bool, error) {
	if instanceID == "" {
		return false, nil
	}
	state, err := c.Status(ctx, workspaceID, instanceID)
	if err != nil {
		return true, err
	}
	return state == "running", nil
}

// GetConsoleOutput returns the instance's serial console through the CP's
// admin route (the tenant has no AWS credentials).
func (c *Client) GetConsoleOutput(ctx context.Context, workspaceID string) (string, error) {
	if !ValidWorkspaceID(workspaceID) {
		return "", invalidArg(opConsole, "invalid workspace id")
	}
	a, err := c.do(ctx, call{op: opConsole, method: http.MethodGet,
		path:  "/cp/admin/workspaces/" + url.PathEscape(workspaceID) + "/console",
		admin: true, limit: capConsole})
	if err != nil {
		return "", err
	}
	if !statusOK(a.status) {
		return "", c.failure(opConsole, a)
	}
	var out struct {
		Output *string `json:"output"`
	}
	if json.Unmarshal(a.body, &out) != nil || out.Output == nil {
		return "", malformed(opConsole, a.status, "malformed console body", ClassRetry)
	}
	return *out.Output, nil
}

// List reads one page of the org's instances that are not terminated. A
// CP without the endpoint yields an error wrapping ErrListUnsupported. Any
// doubtful page (missing instances key, an invalid id, an instance of
// another workspace under a filter, a missing launch time, a cursor that
// does not advance) fails as a whole: a partial list is "unknown", never
// "empty", or the sweep and adoption would act on a fleet they cannot see.
func (c *Client) List(ctx context.Context, opts ListOptions) (Page, error) {
	if opts.WorkspaceID != "" && !ValidWorkspaceID(opts.WorkspaceID) {
		return Page{}, invalidArg(opList, "invalid workspace id")
	}
	limit := opts.Limit
	if limit <= 0 {
		limit = defaultListLimit
	}
	q := url.Values{"org_id": {c.cfg.OrgID}, "limit": {itoa(limit)}}
	if opts.Cursor != "" {
		q.Set("cursor", opts.Cursor)
	}
	if opts.WorkspaceID != "" {
		q.Set("workspace_id", opts.WorkspaceID)
	}
	a, err := c.do(ctx, call{op: opList, method: http.MethodGet, path: "/cp/workspaces", query: q, limit: capJSON})
	if err != nil {
		return Page{}, err
	}
	if !statusOK(a.status) {
		return Page{}, c.failure(opList, a)
	}
	return parsePage(a, opts)
}

func parsePage(a answer, opts ListOptions) (Page, error) {
	var out struct {
		Instances  *[]Instance `json:"instances"`
		NextCursor string      `json:"next_cursor"`
	}
	if json.Unmarshal(a.body, &out) != nil || out.Instances == nil {
		return Page{}, malformed(opList, a.status, "malformed list body", ClassRetry)
	}
	for i, in := range *out.Instances {
		if msg := checkListed(in, opts.WorkspaceID); msg != "" {
			return Page{}, malformed(opList, a.status, msg, ClassRetry)
		}
		(*out.Instances)[i].State = cleanState(in.State)
	}
	if out.NextCursor != "" && out.NextCursor == opts.Cursor {
		return Page{}, malformed(opList, a.status, "list cursor did not advance", ClassRetry)
	}
	return Page{Instances: *out.Instances, NextCursor: out.NextCursor}, nil
}

// checkListed returns why a listed instance cannot be trusted, or "".
// statePattern is the shape of every EC2 state name.
var statePattern = regexp.MustCompile(`^[a-z][a-z-]{0,31}$`)

// cleanState replaces a state that is not a state name with "unknown"
// (which counts as live, the safe direction). The state ends up in jsonb
// events, and Postgres refuses a NUL there: a 201 carrying one once made
// every attempt's recording roll back, leaving its instance unowned.
func cleanState(s string) string {
	if s == "" || statePattern.MatchString(s) {
		return s
	}
	return "unknown"
}

func checkListed(in Instance, filter string) string {
	switch {
	case !ValidWorkspaceID(in.WorkspaceID):
		return "invalid workspace id in list"
	case !ValidInstanceID(in.InstanceID):
		return "invalid instance id in list"
	case in.State == "":
		return "instance without state in list"
	case in.LaunchedAt.IsZero():
		// A zero launch time would look older than any grace period and
		// hand a just-launched instance to the sweep.
		return "instance without launched_at in list"
	case filter != "" && !strings.EqualFold(in.WorkspaceID, filter):
		// A CP ignoring the filter would make us adopt another
		// workspace's instance.
		return "list ignored the workspace_id filter"
	}
	return ""
}

func checkIDs(op, workspaceID, instanceID string) error {
	if !ValidWorkspaceID(workspaceID) {
		return invalidArg(op, "invalid workspace id")
	}
	if !ValidInstanceID(instanceID) {
		return invalidArg(op, "invalid instance id")
	}
	return nil
}
