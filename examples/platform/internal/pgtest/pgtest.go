// Package pgtest gives each test of the example its own Postgres database
// and the worker's binaries. The root module's internal/testdb cannot be
// imported from another module, so this is the small equivalent: a fresh
// database per test on the local trust-auth server (or
// TEST_DATABASE_URL's), dropped when the test ends.
package pgtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	_ "github.com/lib/pq"
)

// AdminURL is the maintenance connection used to create databases.
func AdminURL() string {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

// NewDB creates an empty database for t and returns its URL.
func NewDB(t testing.TB) string {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "pf_t_" + hex.EncodeToString(b[:])
	admin, err := sql.Open("postgres", AdminURL())
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	defer func() { _ = admin.Close() }()
	if _, err := admin.Exec(`CREATE DATABASE ` + name); err != nil {
		t.Fatalf("pgtest: create database (is Postgres on 127.0.0.1:5432 or TEST_DATABASE_URL?): %v", err)
	}
	t.Cleanup(func() {
		db, err := sql.Open("postgres", AdminURL())
		if err == nil {
			_, _ = db.Exec(fmt.Sprintf(`DROP DATABASE IF EXISTS %s WITH (FORCE)`, name))
			_ = db.Close()
		}
	})
	u, err := url.Parse(AdminURL())
	if err != nil {
		t.Fatalf("pgtest: admin url: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

// Open opens url with lib/pq, closed when t ends.
func Open(t testing.TB, dbURL string) *sql.DB {
	t.Helper()
	db, err := sql.Open("postgres", dbURL)
	if err != nil {
		t.Fatalf("pgtest: open: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// Bins builds the root module's commands (worker, cpsim, enqueue) once
// per test binary and returns their directory. Call Cleanup from
// TestMain to remove it.
func Bins(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "platform-bins-")
		if binErr != nil {
			return
		}
		root, err := filepath.Abs(".")
		if err != nil {
			binErr = err
			return
		}
		for root != "/" {
			if _, err := os.Stat(filepath.Join(root, "cmd", "cpsim")); err == nil {
				break
			}
			root = filepath.Dir(root)
		}
		cmd := exec.Command("go", "build", "-o", binDir+"/", "./cmd/worker", "./cmd/cpsim", "./cmd/enqueue")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build: %w: %s", err, out)
		}
	})
	if binErr != nil {
		t.Fatalf("pgtest: %v", binErr)
	}
	return binDir
}

// Cleanup removes what Bins built.
func Cleanup() {
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
}

// MigrateWorker runs `worker migrate up` on dbURL: the worker's schema
// (River's tables and its own), deployed beside the host's.
func MigrateWorker(t testing.TB, dbURL string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(Bins(t), "worker"), "migrate", "up")
	cmd.Env = []string{"DATABASE_URL=" + dbURL, "PATH=" + os.Getenv("PATH")}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pgtest: worker migrate up: %v: %s", err, out)
	}
}

// Context is a test's context, cancelled when it ends.
func Context(t testing.TB) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx
}
