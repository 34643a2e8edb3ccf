package store

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// DefaultSchema is the Postgres schema that holds everything this project
// creates (River's tables, its own, goose's version table) unless
// DATABASE_SCHEMA names another. The host platform's own tables live in
// public, and one of them is called workspaces: sharing a schema with it
// failed the first migration with `relation "workspaces" already exists`.
const DefaultSchema = "provisioner"

// schemaToken is how every query names the schema; Store renders it once
// per query text with the quoted schema name.
const schemaToken = "{schema}"

var schemaName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// ValidateSchema refuses a name that is not a plain lower-case Postgres
// identifier: the name is also handed to River and goose, which do not
// quote it the same way, so anything needing quotes would split the
// project across two schemas.
func ValidateSchema(name string) error {
	if !schemaName.MatchString(name) || strings.HasPrefix(name, "pg_") {
		return fmt.Errorf("store: schema %q: want a lower-case identifier ([a-z_][a-z0-9_]*, at most 63 bytes, not pg_*)", name)
	}
	if name == "public" {
		return errors.New(`store: schema "public": the host's tables live there; name a schema of the worker's own`)
	}
	return nil
}

// Store runs the project's SQL against one schema. Each query is written
// once with {schema} where the schema goes and rendered with the quoted
// name the first time it runs, so no statement depends on the session's
// search_path: a host's *sql.Tx has its own, and an unqualified
// `workspaces` there is the host's table.
type Store struct {
	schema   string
	quoted   string
	rendered sync.Map // template -> SQL
}

var stores sync.Map // schema -> *Store

// For returns the Store of schema (DefaultSchema when empty), one per
// schema per process.
func For(schema string) (*Store, error) {
	if schema == "" {
		schema = DefaultSchema
	}
	if s, ok := stores.Load(schema); ok {
		return s.(*Store), nil
	}
	if err := ValidateSchema(schema); err != nil {
		return nil, err
	}
	s, _ := stores.LoadOrStore(schema, &Store{schema: schema, quoted: pgx.Identifier{schema}.Sanitize()})
	return s.(*Store), nil
}

// MustFor is For for names already validated (configuration is checked at
// start): it panics only on a programming error.
func MustFor(schema string) *Store {
	s, err := For(schema)
	if err != nil {
		panic(err)
	}
	return s
}

// Schema is the schema this Store's queries name.
func (st *Store) Schema() string { return st.schema }

// q renders a query template for this schema.
func (st *Store) q(template string) string {
	if v, ok := st.rendered.Load(template); ok {
		return v.(string)
	}
	v, _ := st.rendered.LoadOrStore(template, strings.ReplaceAll(template, schemaToken, st.quoted))
	return v.(string)
}

// Q renders a query template (tables written as {schema}.name) for this
// schema: for the few statements that live outside this package (the
// bench's seeding, the migrator's safety count).
func (st *Store) Q(template string) string { return st.q(template) }

// on wraps db so every statement run through it is rendered for st's
// schema first.
func (st *Store) on(db DB) DB { return rendering{db: db, st: st} }

type rendering struct {
	db DB
	st *Store
}

func (r rendering) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	return r.db.Exec(ctx, r.st.q(sql), args...)
}

func (r rendering) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	return r.db.Query(ctx, r.st.q(sql), args...)
}

func (r rendering) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return r.db.QueryRow(ctx, r.st.q(sql), args...)
}
