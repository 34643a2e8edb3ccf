package app

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/molecule-ai/provision-worker/internal/config"
	"github.com/molecule-ai/provision-worker/internal/cp"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/jobs"
)

// maxImportLine bounds one JSON line on stdin; a row is four short fields.
const maxImportLine = 64 << 10

const importUsage = `import [--dry-run] [--no-cp-check] < rows.jsonl  |  import --query "SELECT ..." [--dry-run] [--no-cp-check]

Registers the host's running workspaces as owned and running, before the
first sweep, in one transaction. stdin: one JSON object per line,
{"workspace_id","instance_id","runtime","tier"} (and "platform_url", and
"removed": true for a host row already deleted whose instance still runs:
it is registered and its terminate-with-delete requested in the same
transaction); a malformed line exits 2 and imports nothing. The CP's list
is read once first (CP settings from the env, as the worker's): a row
whose instance is not live at the CP for its workspace is refused
(--no-cp-check skips this, for a CP without a list endpoint). A row that
is re-run is "unchanged"; a row with a malformed id, an instance another
workspace owns or a live instance_terminate is stopping, or a workspace
already registered otherwise is refused on its own: the others are
imported, every refusal is listed on stdout, exit 1.
`

// importActor is the timeline's actor of a CLI import.
const importActor = "enqueue import"

// runImport registers the host's running fleet before the first sweep
// (README, "Adopting it in an existing database"). Input is read whole
// and checked before anything connects: a malformed line refuses the
// whole input (exit 2, nothing imported), because a broken producer
// (a truncated export, the wrong file) that imported the rest would leave
// live instances unregistered for the sweep to treat as strays. Rows that
// parse but are refused by jobs.Import are refused one by one: the others
// are imported, every refusal is listed, and the command exits 1.
func runImport(ctx context.Context, cli CLI, args []string, usage string) error {
	var c common
	var query string
	var dryRun, noCPCheck bool
	set := config.New("enqueue import", cli.Getenv)
	commonSettings(set, &c)
	set.String(&query, "query", "", "", `read the rows from this SELECT instead of stdin: its columns are workspace_id, instance_id, runtime, tier and, optionally, removed (bool), in that order (e.g. "SELECT id, instance_id, runtime, tier, status = 'removed' FROM public.workspaces WHERE instance_id IS NOT NULL")`)
	set.Bool(&dryRun, "dry-run", "", false, "decide every row and report, change nothing")
	set.Bool(&noCPCheck, "no-cp-check", "", false, "do not read the CP's list (a CP without a list endpoint): rows are imported without checking their instance is live")
	if err := parseCmd(cli, set, &c, args, usage); err != nil {
		return err
	}
	var rows []jobs.ImportRow
	var lines []int // stdin line of each row
	if query == "" {
		var err error
		if rows, lines, err = readImportLines(cli.In); err != nil {
			return err
		}
	}
	opts := jobs.ImportOptions{Schema: c.Settings.Schema, DryRun: dryRun, Actor: importActor}
	if !noCPCheck {
		var err error
		if opts.Live, err = cpLive(ctx, cli); err != nil {
			return err
		}
	}
	var rep jobs.ImportReport
	err := withTx(ctx, c, func(tx pgx.Tx, client *jobs.Client) error {
		if query != "" {
			var err error
			if rows, err = queryImportRows(ctx, tx, query); err != nil {
				return err
			}
		}
		var err error
		if rep, err = jobs.Import(ctx, jobs.PgxDB(tx), rows, opts); err != nil {
			return err
		}
		return requestStops(ctx, tx, client, rep, dryRun)
	})
	if err != nil {
		return err
	}
	if err := printJSON(cli.Out, importSummary(rep, dryRun, lines)); err != nil {
		return err
	}
	if rep.Refused > 0 {
		return refusedError{refused: rep.Refused, total: len(rep.Outcomes), dryRun: dryRun}
	}
	return nil
}

// requestStops requests the terminate-with-delete of every removed row
// the import registered, in its transaction: the old polling loop's
// unfinished stops, handed to the worker with the rows.
func requestStops(ctx context.Context, tx pgx.Tx, client *jobs.Client, rep jobs.ImportReport, dryRun bool) error {
	stops := rep.Stops()
	if dryRun || len(stops) == 0 {
		return nil
	}
	opts := jobs.TerminateOptions{Delete: true, Actor: importActor}
	if _, err := jobs.RequestTerminateMany(ctx, tx, client, stops, opts); err != nil {
		return fmt.Errorf("request terminate of removed rows: %w", err)
	}
	return nil
}

// maxImportListPages bounds the walk of the CP's list: a cursor that
// never ends fails the import instead of holding it for ever.
const maxImportListPages = 100_000

// cpLive reads the CP's whole list for the org once, before the import's
// transaction opens, and maps each live instance to the workspace the CP
// tags it with (jobs.ImportOptions.Live). Any failed page fails the
// import (nothing imported): a partial list would refuse live rows. A CP
// without the list endpoint is bad input naming --no-cp-check. The list
// is a snapshot: an instance launched since is refused (re-run the
// import), and one terminated between the read and the commit is still
// registered: a residual window as long as the import itself.
func cpLive(ctx context.Context, cli CLI) (map[string]string, error) {
	cfg, err := cp.ConfigFromEnv(cli.Getenv)
	if err != nil {
		// cp's configuration errors name the variable, never a value.
		return nil, fmt.Errorf("%w: %s (or pass --no-cp-check)", config.ErrUsage, err.Error())
	}
	api, err := cp.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", config.ErrUsage, err.Error())
	}
	live := map[string]string{}
	cursor := ""
	for range maxImportListPages {
		page, err := api.List(ctx, cp.ListOptions{Cursor: cursor})
		if errors.Is(err, cp.ErrListUnsupported) {
			return nil, fmt.Errorf("%w: the CP has no list endpoint, so the import cannot check that each instance is live: "+
				"pass --no-cp-check to import without the check; nothing was imported", config.ErrUsage)
		}
		if err != nil {
			return nil, fmt.Errorf("read the CP's list (nothing was imported; --no-cp-check skips it): %w", err)
		}
		for _, in := range page.Instances {
			if in.Live() {
				live[in.InstanceID] = store.CanonicalID(in.WorkspaceID)
			}
		}
		if page.NextCursor == "" {
			return live, nil
		}
		cursor = page.NextCursor
	}
	return nil, errors.New("read the CP's list: it did not end; nothing was imported")
}

// refusedError is exit 1: the rest was imported (committed), and a script
// must not mistake a partial cutover for a complete one.
type refusedError struct {
	refused, total int
	dryRun         bool
}

func (e refusedError) Error() string {
	if e.dryRun {
		return fmt.Sprintf("dry run: %d of %d rows would be refused (listed on stdout)", e.refused, e.total)
	}
	return fmt.Sprintf("%d of %d rows refused (listed on stdout); the others were imported", e.refused, e.total)
}

// readImportLines parses JSON lines, one row each; blank lines are
// skipped. Any malformed line refuses the whole input, naming its line.
func readImportLines(in io.Reader) ([]jobs.ImportRow, []int, error) {
	if in == nil {
		return nil, nil, fmt.Errorf("%w: no stdin to read rows from (or give --query)", config.ErrUsage)
	}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 4096), maxImportLine)
	var rows []jobs.ImportRow
	var lines []int
	line := 0
	for sc.Scan() {
		line++
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 {
			continue
		}
		row, err := parseImportLine(text)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: stdin line %d: %w; nothing was imported", config.ErrUsage, line, err)
		}
		rows, lines = append(rows, row), append(lines, line)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, nil, fmt.Errorf("%w: stdin line %d: longer than %d bytes; nothing was imported", config.ErrUsage, line+1, maxImportLine)
		}
		return nil, nil, fmt.Errorf("read stdin: %w", err)
	}
	return rows, lines, nil
}

// parseImportLine decodes one object with exactly the row's fields: a
// misspelt key would otherwise leave its value empty and hide the typo
// behind a per-row refusal.
func parseImportLine(text []byte) (jobs.ImportRow, error) {
	var row jobs.ImportRow
	if text[0] != '{' {
		return row, errors.New(`want a JSON object like {"workspace_id":"…","instance_id":"i-…","runtime":"…","tier":1}`)
	}
	dec := json.NewDecoder(bytes.NewReader(text))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&row); err != nil {
		return row, fmt.Errorf("not a row: %w", err)
	}
	if dec.More() {
		return row, errors.New("more than one JSON value on the line")
	}
	return row, nil
}

// queryImportRows runs the operator's query inside the import's
// transaction, as a subquery (closed on a line of its own, so a trailing
// -- comment cannot swallow the parenthesis): it can only select (a second statement or a
// DELETE … RETURNING is a syntax error there), and its columns are cast to
// the row's types, NULL runtime and tier read as "" and 0 (a NULL id is
// refused by Import as malformed). A Postgres error in the query is bad
// input (exit 2); the transaction is rolled back.
func queryImportRows(ctx context.Context, tx pgx.Tx, query string) ([]jobs.ImportRow, error) {
	query = strings.TrimRight(strings.TrimSpace(query), "; \t\n")
	n, err := checkImportColumns(ctx, tx, query)
	if err != nil {
		return nil, err
	}
	cols, removed := "q(w, i, r, t)", "false"
	if n == 5 {
		cols, removed = "q(w, i, r, t, d)", "coalesce(d::bool, false)"
	}
	res, err := tx.Query(ctx, `SELECT coalesce(w::text, ''), coalesce(i::text, ''), coalesce(r::text, ''), coalesce(t::int, 0), `+
		removed+` FROM (`+query+"\n"+`) AS `+cols)
	if err != nil {
		return nil, queryError(err)
	}
	defer res.Close()
	var rows []jobs.ImportRow
	for res.Next() {
		var r jobs.ImportRow
		if err := res.Scan(&r.WorkspaceID, &r.InstanceID, &r.Runtime, &r.Tier, &r.Removed); err != nil {
			return nil, queryError(err)
		}
		rows = append(rows, r)
	}
	if err := res.Err(); err != nil {
		return nil, queryError(err)
	}
	return rows, nil
}

// checkImportColumns refuses a query without four or five columns (the
// fifth is removed): a `SELECT *` would otherwise be read by position.
func checkImportColumns(ctx context.Context, tx pgx.Tx, query string) (int, error) {
	res, err := tx.Query(ctx, `SELECT * FROM (`+query+"\n"+`) AS q LIMIT 0`)
	if err != nil {
		return 0, queryError(err)
	}
	n := len(res.FieldDescriptions())
	res.Close()
	if err := res.Err(); err != nil {
		return 0, queryError(err)
	}
	if n != 4 && n != 5 {
		return 0, fmt.Errorf("%w: --query: want 4 or 5 columns (workspace_id, instance_id, runtime, tier[, removed]), got %d; nothing was imported", config.ErrUsage, n)
	}
	return n, nil
}

// queryError makes Postgres' refusal of the query bad input; anything
// else (the connection) stays exit 1.
func queryError(err error) error {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return fmt.Errorf("%w: --query: %s (SQLSTATE %s); nothing was imported", config.ErrUsage, pg.Message, pg.Code)
	}
	return fmt.Errorf("--query: %w", err)
}

// importJSON is what `enqueue import` prints.
type importJSON struct {
	DryRun    bool          `json:"dry_run"`
	Created   int           `json:"created"`
	Unchanged int           `json:"unchanged"`
	Refused   int           `json:"refused"`
	Refusals  []refusalJSON `json:"refusals"`
	// Stops lists the removed rows registered and handed to the worker
	// as terminates-with-delete (in a dry run: that would be).
	Stops []string `json:"stops"`
}

// refusalJSON names a refused row by its place in the input: its stdin
// line, or its row of the query's answer (1-based).
type refusalJSON struct {
	Line        int    `json:"line,omitempty"`
	Row         int    `json:"row,omitempty"`
	WorkspaceID string `json:"workspace_id"`
	InstanceID  string `json:"instance_id"`
	Reason      string `json:"reason"`
}

func importSummary(rep jobs.ImportReport, dryRun bool, lines []int) importJSON {
	out := importJSON{DryRun: dryRun, Created: rep.Created, Unchanged: rep.Unchanged, Refused: rep.Refused,
		Refusals: []refusalJSON{}, Stops: rep.Stops()}
	for i, o := range rep.Outcomes {
		if o.Action != jobs.ImportRefused {
			continue
		}
		r := refusalJSON{WorkspaceID: clipID(o.Row.WorkspaceID), InstanceID: clipID(o.Row.InstanceID), Reason: o.Reason}
		if lines != nil {
			r.Line = lines[i]
		} else {
			r.Row = i + 1
		}
		out.Refusals = append(out.Refusals, r)
	}
	return out
}

// clipID bounds an id echoed from the input: a refused one may be
// anything the producer wrote.
func clipID(s string) string {
	const n = 64
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
