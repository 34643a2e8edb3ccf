// Package api is the example host's HTTP handlers, written as the real
// host's are (database/sql, lib/pq, one *sql.DB), but with the worker's
// requests made inside each handler's own transaction, right before its
// Commit: the row change and the job that carries it out commit together
// or not at all. No goroutine, no detached timeout, no polling loop.
package api

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"unicode/utf8"

	"github.com/lib/pq"

	"github.com/molecule-ai/provision-worker/jobs"

	"example.com/platform/hostdb"
	"example.com/platform/secrets"
)

// Limits on a create request. They keep a request from making the host
// store (and the worker later send) unbounded data.
const (
	maxBody        = 1 << 20
	maxNameLen     = 200
	maxSecrets     = 100
	maxSecretBytes = 32 << 10
)

var (
	uuidPattern      = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	secretKeyPattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)
)

// API serves /workspaces.
type API struct {
	DB     *sql.DB
	Client *jobs.SQLClient // insert-only, in the worker's schema
	Schema string          // the worker's schema ("" is the default)
	Box    *secrets.Box
	Log    *slog.Logger
}

// Register mounts the handlers on mux.
func (a *API) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /workspaces", a.create)
	mux.HandleFunc("GET /workspaces/{id}", a.get)
	mux.HandleFunc("DELETE /workspaces/{id}", a.delete)
	mux.HandleFunc("POST /workspaces/{id}/restart", a.restart)
}

// CreateRequest is POST /workspaces' body.
type CreateRequest struct {
	ID       string            `json:"id,omitempty"` // a UUID; one is generated when empty
	Name     string            `json:"name"`
	Tier     int               `json:"tier"`
	Runtime  string            `json:"runtime"`
	ParentID string            `json:"parent_id,omitempty"`
	Secrets  map[string]string `json:"secrets,omitempty"`
}

// errBadInput marks an error whose text is safe and useful to the caller.
var errBadInput = errors.New("bad input")

func badInput(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errBadInput, fmt.Sprintf(format, args...))
}

func (r *CreateRequest) validate() error {
	if r.ID == "" {
		r.ID = newUUID()
	}
	switch {
	case !uuidPattern.MatchString(r.ID):
		return badInput("id must be a UUID")
	case r.Name == "" || len(r.Name) > maxNameLen || !utf8.ValidString(r.Name):
		return badInput("name is required: 1-%d bytes of UTF-8", maxNameLen)
	case r.Runtime == "":
		return badInput("runtime is required")
	case r.ParentID != "" && !uuidPattern.MatchString(r.ParentID):
		return badInput("parent_id must be a UUID")
	case len(r.Secrets) > maxSecrets:
		return badInput("at most %d secrets", maxSecrets)
	}
	if r.Tier == 0 {
		r.Tier = 1
	}
	for k, v := range r.Secrets {
		// The key is named, never the value.
		if !secretKeyPattern.MatchString(k) {
			return badInput("secret keys must be letters, digits and _ (not starting with a digit)")
		}
		if len(v) > maxSecretBytes {
			return badInput("secret %s is longer than %d bytes", k, maxSecretBytes)
		}
	}
	return nil
}

// create: one transaction holds the row, its encrypted secrets and the
// provision request. The request carries no env: the worker asks the
// host for it at call time (the env hook), so no plaintext is stored.
func (a *API) create(w http.ResponseWriter, r *http.Request) {
	var req CreateRequest
	if err := decode(w, r, &req); err != nil {
		a.fail(w, err)
		return
	}
	if err := req.validate(); err != nil {
		a.fail(w, err)
		return
	}
	ws, err := a.inTx(r.Context(), func(tx *sql.Tx) (hostdb.Workspace, error) {
		row := hostdb.Workspace{ID: req.ID, Name: req.Name, Tier: req.Tier, Runtime: req.Runtime, ParentID: req.ParentID}
		if err := hostdb.Insert(r.Context(), tx, row); err != nil {
			return hostdb.Workspace{}, err
		}
		if err := hostdb.PutSecrets(r.Context(), tx, req.ID, a.seal(req.ID, req.Secrets)); err != nil {
			return hostdb.Workspace{}, err
		}
		_, err := jobs.RequestProvision(r.Context(), tx, a.Client, jobs.ProvisionRequest{
			WorkspaceID: req.ID, Runtime: req.Runtime, Tier: req.Tier, Actor: "platform-create"})
		if err != nil {
			return hostdb.Workspace{}, fmt.Errorf("request provision: %w", err)
		}
		return hostdb.Get(r.Context(), tx, req.ID)
	})
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, ws)
}

func (a *API) seal(id string, values map[string]string) []hostdb.EncryptedSecret {
	out := make([]hostdb.EncryptedSecret, 0, len(values))
	for k, v := range values {
		out = append(out, hostdb.EncryptedSecret{Key: k, Value: a.Box.Seal(id, k, v), Version: secrets.Version})
	}
	return out
}

// DeleteResponse lists the workspaces a delete removed.
type DeleteResponse struct {
	Removed []string `json:"removed"`
}

// delete removes a workspace and its whole subtree in one transaction:
// every row marked removed and a terminate requested for each. The real
// host marked them first, then stopped each instance with a detached
// 30 s timeout; a stop that failed there left an EC2 running with
// nothing tracking it. Here the stops commit with the rows, and the
// worker retries each until the CP confirms it.
func (a *API) delete(w http.ResponseWriter, r *http.Request) {
	id, ok := a.pathID(w, r)
	if !ok {
		return
	}
	ids, err := a.inTxIDs(r.Context(), func(tx *sql.Tx) ([]string, error) {
		err := hostdb.LockRoot(r.Context(), tx, id)
		if errors.Is(err, hostdb.ErrRemoved) {
			return nil, nil // deleted before: its stops committed then (a retried DELETE is a no-op)
		}
		if err != nil {
			return nil, err
		}
		ids, err := hostdb.MarkSubtreeRemoved(r.Context(), tx, id)
		if err != nil {
			return nil, err
		}
		known, err := a.workerKnown(r.Context(), tx, ids)
		if err != nil {
			return nil, err
		}
		if len(known) == 0 {
			return ids, nil
		}
		opts := jobs.TerminateOptions{Delete: true, Actor: "platform-delete"}
		if _, err := jobs.RequestTerminateMany(r.Context(), tx, a.Client, known, opts); err != nil {
			return nil, fmt.Errorf("request terminate: %w", err)
		}
		return ids, nil
	})
	if err != nil {
		a.fail(w, err)
		return
	}
	if ids == nil {
		ids = []string{}
	}
	writeJSON(w, http.StatusAccepted, DeleteResponse{Removed: ids})
}

// workerKnown returns the ids (of rows just marked removed) the worker
// has a row for, whose stops it carries out. The others are host rows
// from before the cutover that the import never took, as they hold no
// instance (a create whose goroutine failed): marked removed, they are
// done, as there is nothing to stop. RequestTerminateMany refuses the
// whole batch for one unknown id (it catches typos), so without this
// filter one such row blocked every delete of its subtree for good. An
// unknown row that does hold an instance is still refused (409, "run
// `platform import` first"): deleting it here would leave its instance
// running with nothing tracking it. One read per row: a subtree is small.
func (a *API) workerKnown(ctx context.Context, tx *sql.Tx, ids []string) ([]string, error) {
	known := make([]string, 0, len(ids))
	for _, id := range ids {
		ok, err := a.knownOrIdle(ctx, tx, id)
		if err != nil {
			return nil, err
		}
		if ok {
			known = append(known, id)
		}
	}
	return known, nil
}

// knownOrIdle reports whether the worker has a row for id; an unknown id
// whose host row holds an instance is jobs.ErrUnknownWorkspace.
func (a *API) knownOrIdle(ctx context.Context, tx *sql.Tx, id string) (bool, error) {
	_, unknown := jobs.GetWorkspace(ctx, jobs.SQLDB(tx), a.Schema, id)
	switch {
	case unknown == nil:
		return true, nil
	case !errors.Is(unknown, jobs.ErrUnknownWorkspace):
		return false, fmt.Errorf("read worker row: %w", unknown)
	}
	host, err := hostdb.Get(ctx, tx, id)
	if err != nil {
		return false, err
	}
	if host.InstanceID != "" {
		return false, unknown // never imported, and it holds an instance
	}
	return false, nil
}

// restart asks for a stop and a fresh provision, in one transaction with
// the row going back to provisioning. A row from before the cutover that
// the worker never had (the import takes rows with an instance only) has
// nothing to stop: it is provisioned afresh, from the host's row.
func (a *API) restart(w http.ResponseWriter, r *http.Request) {
	id, ok := a.pathID(w, r)
	if !ok {
		return
	}
	ws, err := a.inTx(r.Context(), func(tx *sql.Tx) (hostdb.Workspace, error) {
		if err := hostdb.MarkRestarting(r.Context(), tx, id); err != nil {
			return hostdb.Workspace{}, err
		}
		known, err := a.knownOrIdle(r.Context(), tx, id)
		if err != nil {
			return hostdb.Workspace{}, err
		}
		if known {
			_, err = jobs.RequestRestart(r.Context(), tx, a.Client, id, "platform-restart")
		} else {
			err = a.provisionFromHost(r.Context(), tx, id)
		}
		if err != nil {
			return hostdb.Workspace{}, fmt.Errorf("request restart: %w", err)
		}
		return hostdb.Get(r.Context(), tx, id)
	})
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, ws)
}

// provisionFromHost requests a provision of id from its host row's
// runtime and tier (the env hook supplies its env at call time).
func (a *API) provisionFromHost(ctx context.Context, tx *sql.Tx, id string) error {
	host, err := hostdb.Get(ctx, tx, id)
	if err != nil {
		return err
	}
	_, err = jobs.RequestProvision(ctx, tx, a.Client, jobs.ProvisionRequest{
		WorkspaceID: id, Runtime: host.Runtime, Tier: host.Tier, Actor: "platform-restart"})
	return err
}

func (a *API) get(w http.ResponseWriter, r *http.Request) {
	id, ok := a.pathID(w, r)
	if !ok {
		return
	}
	ws, err := hostdb.Get(r.Context(), a.DB, id)
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ws)
}

func (a *API) pathID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("id")
	if !uuidPattern.MatchString(id) {
		a.fail(w, badInput("workspace id must be a UUID"))
		return "", false
	}
	return id, true
}

// inTx runs fn in a transaction and commits it. Any error rolls back:
// after a failed River insert the transaction is broken anyway.
func (a *API) inTx(ctx context.Context, fn func(*sql.Tx) (hostdb.Workspace, error)) (hostdb.Workspace, error) {
	tx, err := a.DB.BeginTx(ctx, nil)
	if err != nil {
		return hostdb.Workspace{}, fmt.Errorf("begin: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	ws, err := fn(tx)
	if err != nil {
		return hostdb.Workspace{}, err
	}
	if err := tx.Commit(); err != nil {
		return hostdb.Workspace{}, fmt.Errorf("commit: %w", err)
	}
	return ws, nil
}

func (a *API) inTxIDs(ctx context.Context, fn func(*sql.Tx) ([]string, error)) ([]string, error) {
	var ids []string
	_, err := a.inTx(ctx, func(tx *sql.Tx) (hostdb.Workspace, error) {
		var err error
		ids, err = fn(tx)
		return hostdb.Workspace{}, err
	})
	return ids, err
}

// fail answers err: a clear 4xx for what the caller can fix, a bare 500
// (and a log line) for the rest. Neither ever holds a secret: the
// request's values are named by key only, and no CP text reaches here.
func (a *API) fail(w http.ResponseWriter, err error) {
	status, msg := classify(err)
	if status >= 500 {
		a.Log.Error("request failed", "err", err)
	}
	writeJSON(w, status, map[string]string{"error": msg})
}

func classify(err error) (int, string) {
	var pqErr *pq.Error
	var tooBig *http.MaxBytesError
	switch {
	case errors.Is(err, errBadInput), errors.Is(err, jobs.ErrInvalidInput):
		return http.StatusBadRequest, err.Error()
	case errors.As(err, &tooBig):
		return http.StatusRequestEntityTooLarge, "request body too large"
	case errors.Is(err, hostdb.ErrNotFound):
		return http.StatusNotFound, err.Error()
	case errors.Is(err, hostdb.ErrRemoved):
		return http.StatusConflict, err.Error()
	case errors.Is(err, jobs.ErrUnknownWorkspace):
		// A row from before the cutover that was never imported.
		return http.StatusConflict, "the worker does not know this workspace: run `platform import` first"
	case errors.As(err, &pqErr) && pqErr.Code == "23505":
		return http.StatusConflict, "workspace id already exists"
	}
	return http.StatusInternalServerError, "internal error"
}

// decode reads a JSON body of at most maxBody bytes, refusing unknown
// fields (a misspelt "secrets" would otherwise drop them silently).
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return err
		}
		// json's message can quote the input (a secret value): not shown.
		return badInput("body must be one JSON object with id, name, tier, runtime, parent_id and secrets")
	}
	if dec.More() {
		return badInput("body must be one JSON object")
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
