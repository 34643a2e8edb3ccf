package cp

import (
	"context"
	"encoding/json"
	"errors"
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
	Skipped    []Skipped // entries the client could not read: never acted on
	NextCursor string    // "" on the last page
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
// refused outright so it never reaches a later URL. private_ip and
// launched_at are optional: absent, null or of another type, they are
// left empty rather than making a launched instance look unanswered.
func parseProvision(workspaceID string, body []byte) (Instance, error) {
	var out struct {
		InstanceID string          `json:"instance_id"`
		State      string          `json:"state"`
		PrivateIP  json.RawMessage `json:"private_ip"`
		LaunchedAt json.RawMessage `json:"launched_at"`
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
	inst := Instance{WorkspaceID: workspaceID, InstanceID: out.InstanceID, State: cleanState(out.State),
		PrivateIP: optionalString(out.PrivateIP)}
	inst.LaunchedAt, _ = parseLaunchedAt(optionalString(out.LaunchedAt))
	return inst, nil
}

// optionalString is raw's string value, or "" when raw is absent, null or
// not a string.
func optionalString(raw json.RawMessage) string {
	var v string
	if json.Unmarshal(raw, &v) != nil {
		return ""
	}
	return v
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
	// "output": null is an empty console (nothing written yet); a missing
	// key or another type is malformed.
	var out struct {
		Output json.RawMessage `json:"output"`
	}
	var text *string
	if json.Unmarshal(a.body, &out) != nil || out.Output == nil || json.Unmarshal(out.Output, &text) != nil {
		return "", malformed(opConsole, a.status, "malformed console body", ClassRetry)
	}
	if text == nil {
		return "", nil
	}
	return *text, nil
}

// List reads one page of the org's instances that are not terminated. A
// CP without the endpoint yields an error wrapping ErrListUnsupported.
//
// The page is read as leniently as docs/design.md#list allows
// ("instances": null is
// an empty page; next_cursor may be absent or null; unknown fields are
// ignored): a correct CP that encoded an empty page as null once left 61
// of 200 stops retrying for days behind a "malformed list body". What the
// contract rules out still fails the page as "unknown", never "empty": a
// missing instances key, a value that is not an array, a cursor that does
// not advance. One entry the client cannot read is skipped and reported in
// Page.Skipped instead: failing the page for it blinded the sweep to every
// stray in the fleet. Under a workspace filter the caller decides about
// that one workspace, so there an unreadable entry (maybe its instance)
// makes the whole page unknown.
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
	return parsePage(a, opts, c.now())
}

func parsePage(a answer, opts ListOptions, now time.Time) (Page, error) {
	var out struct {
		Instances  json.RawMessage `json:"instances"` // nil: key absent; "null": empty
		NextCursor *string         `json:"next_cursor"`
	}
	if json.Unmarshal(a.body, &out) != nil || out.Instances == nil {
		return Page{}, malformed(opList, a.status, "malformed list body", ClassRetry)
	}
	entries, ok := decodeEntries(out.Instances)
	if !ok {
		return Page{}, malformed(opList, a.status, "malformed list body: instances is not an array", ClassRetry)
	}
	var page Page
	if out.NextCursor != nil {
		page.NextCursor = *out.NextCursor
	}
	if page.NextCursor != "" && page.NextCursor == opts.Cursor {
		return Page{}, malformed(opList, a.status, "list cursor did not advance", ClassRetry)
	}
	filter := strings.ToLower(opts.WorkspaceID)
	// The future bound guards the sweep's grace period; under a filter
	// (adoption, a terminate's confirmation) a launch time is not used
	// for age, and refusing it would stop a retry adopting its own
	// instance from a CP whose clock runs ahead.
	latest := now.Add(maxFutureLaunch)
	if filter != "" {
		latest = time.Time{}
	}
	for _, e := range entries {
		inst, skip := readListed(e, latest)
		switch {
		case skip.Reason != "" && filter != "":
			return Page{}, malformed(opList, a.status, "unreadable entry under a workspace filter: "+skip.Reason, ClassRetry)
		case skip.Reason != "":
			page.Skipped = append(page.Skipped, skip)
		case filter != "" && inst.WorkspaceID != filter:
			// A CP ignoring the filter would make us adopt another
			// workspace's instance.
			return Page{}, malformed(opList, a.status, "list ignored the workspace_id filter", ClassRetry)
		default:
			page.Instances = append(page.Instances, inst)
		}
	}
	return page, nil
}

// Skipped is a listed entry the client could not read. Nobody acts on it:
// it may be any workspace's instance, so the sweep never terminates it
// and only reports it.
type Skipped struct {
	InstanceID string // "" unless the entry held a valid instance id
	Reason     string
}

// earliestLaunch is before any EC2 instance: an earlier launched_at is a
// placeholder (Go's zero time.Time), not a time.
var earliestLaunch = time.Date(2006, 1, 1, 0, 0, 0, 0, time.UTC)

// maxFutureLaunch bounds how far ahead of our clock a launch time may be.
// A far-future launched_at would look younger than any grace period for
// ever and hide a stray from the sweep; beyond a day it is not clock skew.
const maxFutureLaunch = 24 * time.Hour

// listEntry is one list entry as sent; undecodable marks an entry that
// was not an object of strings.
type listEntry struct {
	WorkspaceID string `json:"workspace_id"`
	InstanceID  string `json:"instance_id"`
	State       string `json:"state"`
	LaunchedAt  string `json:"launched_at"`
	undecodable bool
}

// decodeEntries reads the instances array. The whole array is decoded in
// one go; only when some entry is of another shape is it decoded entry by
// entry, so that one odd entry is skipped instead of failing the page.
// ok is false when instances is not an array (null is an empty one).
func decodeEntries(raw json.RawMessage) (entries []listEntry, ok bool) {
	if json.Unmarshal(raw, &entries) == nil {
		return entries, true
	}
	var raws []json.RawMessage
	if json.Unmarshal(raw, &raws) != nil {
		return nil, false
	}
	entries = make([]listEntry, len(raws))
	for i, r := range raws {
		if json.Unmarshal(r, &entries[i]) != nil {
			entries[i] = listEntry{undecodable: true}
		}
	}
	return entries, true
}

// readListed checks one list entry, or says why it cannot be trusted.
// Workspace ids come back lower-case: one canonical form, so a CP that
// echoes upper-case ids cannot hide an instance from a comparison.
// A zero latest applies no future bound.
func readListed(e listEntry, latest time.Time) (Instance, Skipped) {
	if e.undecodable {
		return Instance{}, Skipped{Reason: "entry is not an instance object"}
	}
	skip := Skipped{}
	if ValidInstanceID(e.InstanceID) {
		skip.InstanceID = e.InstanceID
	}
	launched, lerr := parseLaunchedAt(e.LaunchedAt)
	switch {
	case skip.InstanceID == "":
		skip.Reason = "invalid instance id"
	case !ValidWorkspaceID(e.WorkspaceID):
		skip.Reason = "invalid workspace id"
	case e.State == "":
		skip.Reason = "no state"
	case lerr != nil || launched.Before(earliestLaunch):
		// A missing or zero launch time (a Go CP writing time.Time{} for
		// an instance it has just launched) would look older than any
		// grace period and hand a just-launched instance to the sweep.
		skip.Reason = "no valid launched_at"
	case !latest.IsZero() && launched.After(latest):
		skip.Reason = "launched_at more than a day in the future"
	}
	if skip.Reason != "" {
		return Instance{}, skip
	}
	return Instance{WorkspaceID: strings.ToLower(e.WorkspaceID), InstanceID: e.InstanceID,
		State: cleanState(e.State), LaunchedAt: launched}, Skipped{}
}

// parseLaunchedAt reads an RFC 3339 time, with or without fractional
// seconds, with Z or a numeric offset, and the forms RFC 3339 also allows
// (lower-case t and z, a space for the T); an offset without its colon is
// accepted too, as some encoders write it.
func parseLaunchedAt(s string) (time.Time, error) {
	s = strings.ToUpper(strings.TrimSpace(s))
	if len(s) > 10 && s[10] == ' ' {
		s = s[:10] + "T" + s[11:]
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t, err = time.Parse("2006-01-02T15:04:05.999999999Z0700", s)
	}
	if err != nil {
		return time.Time{}, errors.New("launched_at is not an RFC 3339 time")
	}
	return t, nil
}

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

func checkIDs(op, workspaceID, instanceID string) error {
	if !ValidWorkspaceID(workspaceID) {
		return invalidArg(op, "invalid workspace id")
	}
	if !ValidInstanceID(instanceID) {
		return invalidArg(op, "invalid instance id")
	}
	return nil
}
