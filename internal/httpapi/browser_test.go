package httpapi_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/google/uuid"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/molecule-ai/provision-worker/internal/jobtest"
	"github.com/molecule-ai/provision-worker/internal/store"
	"github.com/molecule-ai/provision-worker/internal/testdb"
	"github.com/molecule-ai/provision-worker/jobs"
)

// chromiumPath is Debian's chromium package; .ci/run installs it. The test
// never downloads a browser.
const chromiumPath = "/usr/bin/chromium"

// browser starts headless Chromium with a fresh profile and nothing that
// reaches beyond loopback (no component updates, sync or QUIC probes).
func browser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		testdb.MissingTool(t, "browser test skipped: %s not found (apt-get install -y chromium; .ci/run does)", chromiumPath)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() { cancelTimeout(); cancelTab(); cancelAlloc() })
	return ctx
}

// logIn makes every request of the tab carry the operator's basic-auth
// credentials, as the browser's login prompt would.
func logIn(t *testing.T, ctx context.Context, user, pass string) {
	t.Helper()
	token := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	_, err := chromedp.Call(ctx, network.Enable, network.EnableParams{})
	require.NoError(t, err)
	_, err = chromedp.Call(ctx, network.SetExtraHTTPHeaders,
		network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Authorization": "Basic " + token}})
	require.NoError(t, err)
}

// screenshot saves the page for debugging a failed run.
func screenshot(t *testing.T, ctx context.Context, name string) {
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(90))
	if err != nil {
		t.Logf("screenshot %s: %v", name, err)
		return
	}
	path := filepath.Join(t.TempDir(), name+".png")
	if err := os.WriteFile(path, png, 0o600); err == nil {
		t.Logf("screenshot: %s", path)
	}
}

// The night-page story: a stop died against a failing CP, the operator
// logs in to River UI, finds the discarded terminate and presses Retry;
// the job runs again, completes, and the workspace reaches stopped.
func TestBrowser_RetryDiscardedTerminateFromRiverUI(t *testing.T) {
	ctx := browser(t)
	env := jobtest.New(t, jobtest.Config{Settings: jobs.Settings{TerminateMaxAttempts: 1}})
	wsID, jobID := discardedTerminate(t, env)
	_, hs := newServer(t, env, env.Pool, uiUser, uiPass)
	jobURL := fmt.Sprintf("%s/riverui/jobs/%d", hs.URL, jobID)

	code, _, _ := get(t, jobURL, nil)
	require.Equal(t, 401, code, "the job page must not open without credentials")

	logIn(t, ctx, uiUser, uiPass)
	t.Cleanup(func() {
		if t.Failed() {
			screenshot(t, ctx, "failure")
		}
	})
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(jobURL))
	require.NoError(t, err)
	require.Equal(t, int64(200), resp.Status)

	retry := chromedp.Search(`//button[normalize-space(.)="Retry"]`)
	require.NoError(t, chromedp.Do(ctx, chromedp.WaitVisible(retry)))
	body, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
	require.NoError(t, err)
	require.Contains(t, body, jobs.KindTerminate, "the page shows the dead job")
	require.Contains(t, body, wsID, "the page shows the job's args")
	screenshot(t, ctx, "before-retry")

	require.NoError(t, chromedp.Do(ctx, chromedp.Click(retry)))
	env.WaitFor("the retried terminate to complete", func() bool {
		return jobRow(t, env, jobID).State == rivertype.JobStateCompleted
	})
	ws := env.WaitStatus(wsID, store.StatusStopped)
	require.Empty(t, ws.InstanceID)
	require.Empty(t, env.CP.Live(wsID), "the instance is really gone at the CP")
	screenshot(t, ctx, "after-retry")
}

// The review's CSRF, in a real browser: the operator, logged in to River
// UI, opens a page of another site that auto-submits a text/plain form at
// River UI's cancel endpoint. The browser sends the request with the
// operator's credentials; the worker must refuse it and the job must stay.
func TestBrowser_CrossSiteFormPostCannotCancelAJob(t *testing.T) {
	ctx := browser(t)
	env := jobtest.New(t, jobtest.Config{NoStart: true})
	res := env.Provision(jobs.ProvisionRequest{WorkspaceID: uuid.NewString()})
	srv, _ := newServer(t, env, env.Pool, uiUser, uiPass)
	answered := make(chan int, 1)
	ui := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		srv.ServeHTTP(rec, r)
		if r.URL.Path == "/riverui/api/jobs/cancel" {
			answered <- rec.code
		}
	}))
	t.Cleanup(ui.Close)
	// localhost vs 127.0.0.1: another site, as evil.example would be.
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, `<html><body><form id="f" method="POST" enctype="text/plain" action="%s/riverui/api/jobs/cancel">`+
			`<input name='{"ids":["%d"],"x":"' value='"}'></form><script>document.getElementById("f").submit()</script></body></html>`,
			ui.URL, res.Job.ID)
	}))
	t.Cleanup(evil.Close)
	evilURL := strings.Replace(evil.URL, "127.0.0.1", "localhost", 1)

	logIn(t, ctx, uiUser, uiPass)
	_, err := chromedp.Run(ctx, chromedp.NavigateResponse(evilURL))
	require.NoError(t, err)
	select {
	case code := <-answered:
		require.Equal(t, http.StatusForbidden, code)
	case <-ctx.Done():
		t.Fatal("the browser never sent the cross-site form")
	}
	require.Equal(t, rivertype.JobStateAvailable, jobRow(t, env, res.Job.ID).State, "the job was not cancelled")
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) { r.code = code; r.ResponseWriter.WriteHeader(code) }
