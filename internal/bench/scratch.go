package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/molecule-ai/provision-worker/internal/migrate"
)

// LocalServer is the local trust-auth Postgres the bench uses when no URL
// is given.
const LocalServer = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// Scratch creates a migrated database per figure on one Postgres server
// and drops them all on Close. The bench never works in the database its
// URL names: a worker left running against it (make run) would steal the
// bench's jobs and skew every figure.
type Scratch struct {
	server *url.URL

	mu    sync.Mutex
	names []string
	pools []*pgxpool.Pool
}

// NewScratch uses the server (host, port, user, options) of serverURL, a
// postgres:// URL; the role needs CREATE DATABASE.
func NewScratch(serverURL string) (*Scratch, error) {
	u, err := url.Parse(serverURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return nil, fmt.Errorf("database URL: want postgres://user@host:port/db, got an unparsable value")
	}
	return &Scratch{server: u}, nil
}

func (s *Scratch) urlFor(db string) string {
	u := *s.server
	u.Path = "/" + db
	return u.String()
}

// adminExec runs one statement on the server's maintenance database.
func (s *Scratch) adminExec(ctx context.Context, sql string) error {
	// Parsed as a pool's URL: pgx.Connect refuses pool_* parameters
	// (pool_max_conns=4 in DATABASE_URL sizes the figures' pools).
	cfg, err := pgxpool.ParseConfig(s.urlFor("postgres"))
	if err != nil {
		return errors.New("database URL: not a Postgres URL pgx can parse") // pgx's message may quote the password
	}
	conn, err := pgx.ConnectConfig(ctx, cfg.ConnConfig)
	if err != nil {
		return fmt.Errorf("connect to the Postgres server: %w", err)
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

// NewDB implements DBSource.
func (s *Scratch) NewDB(ctx context.Context) (*pgxpool.Pool, error) {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "pw_bench_" + hex.EncodeToString(b)
	if err := s.adminExec(ctx, "CREATE DATABASE "+name); err != nil {
		return nil, fmt.Errorf("create database %s: %w", name, err)
	}
	s.mu.Lock()
	s.names = append(s.names, name)
	s.mu.Unlock()
	// Default pool settings, as the worker's pgxpool.New(DATABASE_URL).
	pool, err := pgxpool.New(ctx, s.urlFor(name))
	if err != nil {
		return nil, fmt.Errorf("pool: %w", err)
	}
	s.mu.Lock()
	s.pools = append(s.pools, pool)
	s.mu.Unlock()
	m, err := migrate.New(pool, "")
	if err != nil {
		return nil, err
	}
	defer m.Close()
	if err := m.Up(ctx, io.Discard); err != nil {
		return nil, err
	}
	return pool, nil
}

// Close closes the pools and drops every database the bench created.
func (s *Scratch) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.pools {
		p.Close()
	}
	var first error
	for _, name := range s.names {
		err := s.adminExec(context.Background(), fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", name))
		if err != nil && first == nil {
			first = fmt.Errorf("drop database %s: %w", name, err)
		}
	}
	s.names, s.pools = nil, nil
	return first
}
