package jobs

import (
	"database/sql"
	"fmt"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverdatabasesql"
	"github.com/riverqueue/river/rivertype"

	"github.com/molecule-ai/provision-worker/internal/store"
)

// SQLClient is the River client a database/sql host enqueues through: its
// InsertTx takes the handler's own *sql.Tx (lib/pq or pgx's stdlib).
type SQLClient = river.Client[*sql.Tx]

// NewInsertClientSQL is NewInsertClient for a host on database/sql: an
// insert-only River client on River's riverdatabasesql driver, in
// settings.Schema, for RequestProvision, RequestTerminate and
// RequestRestart inside the host's *sql.Tx.
func NewInsertClientSQL(db *sql.DB, settings Settings) (*SQLClient, error) {
	settings = settings.withDefaults()
	if _, err := store.For(settings.Schema); err != nil {
		return nil, err
	}
	c, err := river.NewClient(riverdatabasesql.New(db), &river.Config{
		Schema: settings.Schema,
		// As NewInsertClient: see its comment.
		FetchCooldown: 5 * time.Millisecond,
		Hooks:         []rivertype.Hook{&budgetHook{settings: settings}},
		Logger:        quietLogger(),
	})
	if err != nil {
		return nil, fmt.Errorf("river insert client: %w", err)
	}
	return c, nil
}
