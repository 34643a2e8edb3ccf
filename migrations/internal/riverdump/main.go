// Command riverdump writes River's schema as plain-SQL goose migrations.
//
// Operators run migrations with the stock goose CLI as well as with
// `worker migrate`, so River's schema has to exist as files rather than as
// rivermigrate calls hidden in Go. The files are generated, not
// hand-copied: hand-copied DDL drifts from what River's own validator
// expects. After a River upgrade, run it again: it adds the new versions'
// files and leaves existing ones as they are.
//
//	go run ./migrations/internal/riverdump -dir migrations
package main

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"

	"github.com/molecule-ai/provision-worker/migrations"
)

func main() {
	dir := flag.String("dir", "migrations", "directory to write the goose files into")
	flag.Parse()
	if err := run(*dir); err != nil {
		fmt.Fprintln(os.Stderr, "riverdump:", err)
		os.Exit(1)
	}
}

func run(dir string) error {
	files, err := migrations.RiverFiles(riverVersion())
	if err != nil {
		return err
	}
	for _, f := range files {
		path := filepath.Join(dir, f.Name)
		if _, err := os.Stat(path); err == nil {
			continue // applied files are history: never rewrite them
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("stat %s: %w", path, err)
		}
		if err := os.WriteFile(path, []byte(f.SQL), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		fmt.Println("wrote", path)
	}
	return nil
}

// riverVersion names the River module version the dump came from, so each
// file's header says which release a reviewer should compare it with.
func riverVersion() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Path == "github.com/riverqueue/river" {
				return dep.Version
			}
		}
	}
	return "unknown"
}
