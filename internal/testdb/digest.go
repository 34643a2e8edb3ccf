package testdb

import (
	"github.com/molecule-ai/provision-worker/internal/store"

	"crypto/sha256"
	"encoding/hex"
	"io/fs"

	"github.com/molecule-ai/provision-worker/migrations"
)

// migrationsDigest names the template after the migrations' bytes, so an
// edited migration gets a fresh template instead of a stale one.
func migrationsDigest() string {
	h := sha256.New()
	// The layout (which schema the files go into) is part of the template:
	// a template migrated into public must not be reused.
	h.Write([]byte("schema:" + store.DefaultSchema + "\n"))
	_ = fs.WalkDir(migrations.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(migrations.FS, path)
		if err != nil {
			return err
		}
		h.Write([]byte(path))
		h.Write(b)
		return nil
	})
	return hex.EncodeToString(h.Sum(nil))[:12]
}
