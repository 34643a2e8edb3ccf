package jobs

import (
	"database/sql"
	"fmt"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverdatabasesql"
)

// SQLClient is the River client a database/sql host enqueues through: its
// InsertTx takes the handler's own *sql.Tx (lib/pq or pgx's stdlib).
type SQLClient = river.Client[*sql.Tx]

// NewInsertClientSQL is NewInsertClient for a host on database/sql: an
// insert-only River client on River's riverdatabasesql driver, in
// settings.Schema, for RequestProvision, RequestTerminate and
// RequestRestart inside the host's *sql.Tx.
func NewInsertClientSQL(db *sql.DB, settings Settings) (*SQLClient, error) {
	cfg, err := insertConfig(settings)
	if err != nil {
		return nil, err
	}
	c, err := river.NewClient(riverdatabasesql.New(db), cfg)
	if err != nil {
		return nil, fmt.Errorf("river insert client: %w", err)
	}
	registerContract(c, settings)
	return c, nil
}
