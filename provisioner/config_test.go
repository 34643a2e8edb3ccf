package provisioner_test

import (
	"context"
	"fmt"
	"go/ast"
	"go/importer"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/jobs"
	"github.com/molecule-ai/provision-worker/provisioner"
)

const (
	secretPass = "pg-Pa55-never-shown"
	secretCP   = "cp-5hared-never-shown"
)

// goodConfig passes every check; nothing listens at its database, so a
// config error must come before any connection is tried.
func goodConfig() provisioner.Config {
	return provisioner.Config{
		DatabaseURL: "postgres://u:" + secretPass + "@127.0.0.1:1/db?sslmode=disable",
		CP:          provisioner.CPConfig{OrgID: "org-1", SharedSecret: secretCP},
	}
}

// New refuses a config it cannot run safely with, before connecting,
// naming the setting at fault and never a secret.
func TestNew_RefusesBadConfigBeforeConnecting(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		mod  func(*provisioner.Config)
		want []string
	}{
		{"no database url", func(c *provisioner.Config) { c.DatabaseURL = "" }, []string{"DATABASE_URL", "required"}},
		{"malformed database url", func(c *provisioner.Config) { c.DatabaseURL = "postgres://u:" + secretPass + "@h:notaport/db" }, []string{"DATABASE_URL", "Postgres URL"}},
		{"schema public", func(c *provisioner.Config) { c.Settings.Schema = "public" }, []string{"DATABASE_SCHEMA"}},
		{"schema not an identifier", func(c *provisioner.Config) { c.Settings.Schema = "x; DROP" }, []string{"DATABASE_SCHEMA"}},
		{"no org id", func(c *provisioner.Config) { c.CP.OrgID = "" }, []string{"MOLECULE_ORG_ID", "required"}},
		{"cp url with credentials", func(c *provisioner.Config) { c.CP.BaseURL = "https://u:" + secretCP + "@cp.example" }, []string{"BaseURL"}},
		{"ui user without password", func(c *provisioner.Config) { c.UIUser = "ops" }, []string{"RIVER_BASIC_AUTH_USER", "RIVER_BASIC_AUTH_PASS"}},
		{"ui password without user", func(c *provisioner.Config) { c.UIPass = secretPass }, []string{"RIVER_BASIC_AUTH_USER"}},
		{"job timeout under cp timeout", func(c *provisioner.Config) { c.CP.Timeout = 5 * time.Minute }, []string{"PROVISION_TIMEOUT", "CP_TIMEOUT"}},
		{"rescue before the job timeouts", func(c *provisioner.Config) { c.Options.RescueAfter = time.Minute }, []string{"RESCUE_AFTER", "must exceed"}},
		{"negative event retention", func(c *provisioner.Config) { c.Prune.Retention = -time.Hour }, []string{"EVENT_RETENTION"}},
		{"negative prune batch size", func(c *provisioner.Config) { c.Prune.BatchSize = -1 }, []string{"EVENT_PRUNE_BATCH_SIZE"}},
		{"sweep grace under a provision's life", func(c *provisioner.Config) {
			c.SweepEnabled = true
			c.Sweep = jobs.DefaultSweepSettings()
			c.Sweep.Grace = time.Second
		}, []string{"SWEEP_GRACE"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := goodConfig()
			tt.mod(&cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()

			w, err := provisioner.New(ctx, cfg)

			require.Nil(t, w)
			require.Error(t, err)
			require.NoError(t, ctx.Err(), "New tried to connect")
			for _, want := range tt.want {
				require.Contains(t, err.Error(), want)
			}
			require.NotContains(t, err.Error(), secretPass)
			require.NotContains(t, err.Error(), secretCP)
			verr := cfg.Validate()
			require.Error(t, verr)
			require.Equal(t, err.Error(), verr.Error(), "Validate and New agree")
		})
	}
	t.Run("a good config passes Validate", func(t *testing.T) {
		require.NoError(t, goodConfig().Validate())
	})
}

// A good config against no database fails in New with the database's
// error, and the message still carries no password.
func TestNew_UnreachableDatabase(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	w, err := provisioner.New(ctx, goodConfig())
	require.Nil(t, w)
	require.Error(t, err)
	require.NotContains(t, err.Error(), secretPass)
}

// FromEnv reads the worker's variables, with the command's defaults, and
// refuses what the command refuses, naming the variable.
func TestFromEnv(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"DATABASE_URL":              "postgres://u:" + secretPass + "@127.0.0.1:5432/db",
		"MOLECULE_ORG_ID":           "org-9",
		"CP_PROVISION_URL":          "http://127.0.0.1:9",
		"MOLECULE_CP_SHARED_SECRET": secretCP,
		"PROVISION_WORKERS":         "7",
		"RESCUE_AFTER":              "5m",
		"SWEEP_ENABLED":             "false",
		"DATABASE_SCHEMA":           "hostwork",
		"RIVER_BASIC_AUTH_USER":     "ops",
		"RIVER_BASIC_AUTH_PASS":     "pw",
	}
	getenv := func(k string) string { return env[k] }
	c, err := provisioner.FromEnv(getenv)
	require.NoError(t, err)
	require.Equal(t, "org-9", c.CP.OrgID)
	require.Equal(t, "http://127.0.0.1:9", c.CP.BaseURL)
	require.Equal(t, secretCP, c.CP.SharedSecret)
	require.Equal(t, secretCP, c.CP.AdminAPIKey, "falls back to the shared secret, as the command does")
	require.Equal(t, 7, c.Options.ProvisionWorkers)
	require.Equal(t, 5*time.Minute, c.Options.RescueAfter)
	require.Equal(t, "hostwork", c.Settings.Schema)
	require.False(t, c.SweepEnabled)
	require.Equal(t, 30*time.Second, c.ShutdownTimeout)
	require.Equal(t, jobs.DefaultSettings().ProvisionTimeout, c.Settings.ProvisionTimeout)
	require.Equal(t, "ops", c.UIUser)
	require.NoError(t, c.Validate())

	for k, v := range map[string]string{"RESCUE_AFTER": "1m", "PROVISION_WORKERS": "lots", "LOG_LEVEL": "loud", "MOLECULE_ORG_ID": ""} {
		t.Run(k, func(t *testing.T) {
			t.Parallel()
			bad := func(name string) string {
				if name == k {
					return v
				}
				return env[name]
			}
			_, err := provisioner.FromEnv(bad)
			require.Error(t, err)
			require.Contains(t, err.Error(), k)
			require.NotContains(t, err.Error(), secretPass)
		})
	}
}

// publicPackages are the packages a host outside this module imports.
var publicPackages = []string{
	"github.com/molecule-ai/provision-worker/jobs",
	"github.com/molecule-ai/provision-worker/provisioner",
}

// No exported identifier of a public package may show an internal/ type,
// not even through an alias: a host outside this module could not name
// it. Reads each package's compiled export data and walks every exported
// object's type, its exported fields and its methods.
func TestPublicAPI_UsesNoInternalType(t *testing.T) {
	t.Parallel()
	for _, path := range publicPackages {
		t.Run(path[strings.LastIndex(path, "/")+1:], func(t *testing.T) {
			t.Parallel()
			pkg := importCompiled(t, path)
			var bad []string
			check := func(what string, typ types.Type) {
				if s := internalIn(typ, pkg, map[types.Type]bool{}); s != "" {
					bad = append(bad, what+": "+s)
				}
			}
			scope := pkg.Scope()
			for _, name := range scope.Names() {
				if !ast.IsExported(name) {
					continue
				}
				obj := scope.Lookup(name)
				check(name, obj.Type())
				if tn, ok := obj.(*types.TypeName); ok {
					checkNamed(tn, pkg, check)
				}
			}
			require.Empty(t, bad)
		})
	}
}

// internalIn returns the first internal/ type typ shows, looking through
// aliases, composite types, signatures, type arguments and the package's
// own unexported named types; "" when there is none. seen stops cycles.
func internalIn(typ types.Type, pkg *types.Package, seen map[types.Type]bool) string {
	if typ == nil || seen[typ] {
		return ""
	}
	seen[typ] = true
	in := func(ts ...types.Type) string {
		for _, t := range ts {
			if s := internalIn(t, pkg, seen); s != "" {
				return s
			}
		}
		return ""
	}
	switch t := typ.(type) {
	case *types.Alias:
		if isInternal(t.Obj().Pkg()) {
			return t.Obj().Pkg().Path() + "." + t.Obj().Name()
		}
		return in(types.Unalias(t))
	case *types.Named:
		if isInternal(t.Obj().Pkg()) {
			return types.TypeString(t, nil)
		}
		for ta := range t.TypeArgs().Types() {
			if s := in(ta); s != "" {
				return s
			}
		}
		if t.Obj().Pkg() == pkg && !t.Obj().Exported() {
			return in(t.Underlying()) // its exported names are checked on their own
		}
	case *types.Pointer:
		return in(t.Elem())
	case *types.Slice:
		return in(t.Elem())
	case *types.Array:
		return in(t.Elem())
	case *types.Chan:
		return in(t.Elem())
	case *types.Map:
		return in(t.Key(), t.Elem())
	case *types.Signature:
		return in(t.Params(), t.Results())
	case *types.Tuple:
		for v := range t.Variables() {
			if s := in(v.Type()); s != "" {
				return s
			}
		}
	case *types.Struct:
		for f := range t.Fields() {
			if s := in(f.Type()); s != "" {
				return s
			}
		}
	case *types.Interface:
		for m := range t.Methods() {
			if s := in(m.Type()); s != "" {
				return s
			}
		}
	}
	return ""
}

func isInternal(p *types.Package) bool {
	return p != nil && strings.Contains(p.Path()+"/", "/internal/")
}

// checkNamed checks the exported fields and methods of a named type
// declared in pkg (an alias's target elsewhere is checked as a type: its
// methods are that package's API, not ours).
func checkNamed(tn *types.TypeName, pkg *types.Package, check func(string, types.Type)) {
	named, ok := types.Unalias(tn.Type()).(*types.Named)
	if !ok || named.Obj().Pkg() != pkg {
		return
	}
	if st, ok := named.Underlying().(*types.Struct); ok {
		for f := range st.Fields() {
			if f.Exported() {
				check(tn.Name()+"."+f.Name(), f.Type())
			}
		}
	}
	ms := types.NewMethodSet(types.NewPointer(named))
	for sel := range ms.Methods() {
		if sel.Obj().Exported() {
			check(tn.Name()+"."+sel.Obj().Name(), sel.Type())
		}
	}
}

// importCompiled loads path's types from the build cache's export data
// (`go list -export`): type-checking it from source takes minutes.
func importCompiled(t *testing.T, path string) *types.Package {
	t.Helper()
	out, err := exec.Command("go", "list", "-export", "-deps", "-f", "{{.ImportPath}}\t{{.Export}}", path).Output()
	require.NoError(t, err)
	exports := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if p, file, ok := strings.Cut(line, "\t"); ok && file != "" {
			exports[p] = file
		}
	}
	lookup := func(p string) (io.ReadCloser, error) {
		file, ok := exports[p]
		if !ok {
			return nil, fmt.Errorf("no export data for %s", p)
		}
		return os.Open(file)
	}
	pkg, err := importer.ForCompiler(token.NewFileSet(), "gc", lookup).Import(path)
	require.NoError(t, err)
	return pkg
}
