package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/molecule-ai/provision-worker/internal/config"
	"github.com/molecule-ai/provision-worker/internal/cp"
	"github.com/molecule-ai/provision-worker/internal/safetext"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/jobs"
)

// The serial console on demand (issue 16, 4): a provision that failed to
// boot is exactly when an operator wants it, and the CP serves it only on
// its admin route. A boot log can hold the workspace's user-data (its env
// values), so the text goes to this process's stdout and nowhere else:
// never a log line, the timeline, a job or the database.
func runConsole(ctx context.Context, cli CLI, args []string, usage string) error {
	var c common
	var id string
	set := config.New("enqueue console", cli.Getenv)
	commonSettings(set, &c)
	set.String(&id, "workspace-id", "", "", "workspace UUID (required)")
	if err := parseCmd(cli, set, &c, args, usage); err != nil {
		return err
	}
	if _, err := uuid.Parse(id); err != nil {
		return fmt.Errorf("%w: --workspace-id: want a UUID, got %q", config.ErrUsage, id)
	}
	id = store.CanonicalID(id)
	cfg, err := cp.ConfigFromEnv(cli.Getenv)
	if err != nil {
		// cp's configuration errors name the variable, never a value.
		return fmt.Errorf("%w: %s", config.ErrUsage, err.Error())
	}
	api, err := cp.New(cfg)
	if err != nil {
		return fmt.Errorf("%w: %s", config.ErrUsage, err.Error())
	}
	if err := knownWorkspace(ctx, c, id); err != nil {
		return err
	}
	out, err := api.GetConsoleOutput(ctx, id)
	if err != nil {
		return consoleError(err)
	}
	if out == "" {
		fmt.Fprintln(cli.Err, "enqueue: the console is empty (the instance has written nothing yet, or has none)")
		return nil
	}
	return writeConsole(cli.Out, out)
}

// knownWorkspace refuses an id this database never had (exit 2, and no
// CP call): a typo should not ask the CP for another tenant's console.
func knownWorkspace(ctx context.Context, c common, id string) error {
	st, err := store.For(c.Settings.Schema)
	if err != nil {
		return fmt.Errorf("%w: %w", config.ErrUsage, err)
	}
	pool, err := pgxpool.New(ctx, c.DatabaseURL)
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	defer pool.Close()
	_, err = st.Get(ctx, pool, id)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w %s", jobs.ErrUnknownWorkspace, id)
	}
	if err != nil {
		return fmt.Errorf("read workspace: %w", err)
	}
	return nil
}

// consoleError says what failed without the CP's words: the console route
// is an admin route, and an error page there may echo the request's
// credentials or the console itself.
func consoleError(err error) error {
	status := cp.StatusCode(err)
	switch {
	case errors.Is(err, context.Canceled):
		return errors.New("console: interrupted")
	case errors.Is(err, context.DeadlineExceeded):
		return errors.New("console: the CP did not answer within CP_TIMEOUT")
	case status == 0:
		return errors.New("console: no answer from the CP (is CP_PROVISION_URL right and the CP up?)")
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return fmt.Errorf("console: the CP refused the admin credentials (status %d): check CP_ADMIN_API_TOKEN (and ADMIN_TOKEN)", status)
	case status == http.StatusNotFound:
		return errors.New("console: the CP has no console for this workspace (status 404): no instance, or not yet booted")
	case status >= 200 && status < 300:
		return fmt.Errorf("console: the CP's answer could not be read (status %d)", status)
	}
	return fmt.Errorf("console: the CP answered status %d (its message is not repeated here)", status)
}

// writeConsole prints the console keeping its lines and tabs. Every other
// rune that is not graphic becomes U+FFFD: the boot log is written by the
// instance (and its user-data), and raw escape sequences would drive the
// operator's terminal (retitle it, rewrite what is on screen, or, on some
// terminals, answer back as typed input).
func writeConsole(w io.Writer, s string) error {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	out := safetext.ReplaceKeeping(s, '\uFFFD', "\n\t")
	if !strings.HasSuffix(s, "\n") {
		out += "\n"
	}
	_, err := io.WriteString(w, out)
	return err
}
