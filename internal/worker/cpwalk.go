package worker

import (
	"context"
	"fmt"

	"github.com/molecule-ai/provision-worker/internal/cp"
	"github.com/molecule-ai/provision-worker/internal/store"
)

// maxListPages bounds one walk of a workspace's instances: a CP whose
// cursor never ends must not hold a job forever.
const maxListPages = 100

// eachLive calls fn for every live instance of a workspace, page by page,
// until fn returns stop. Any list failure is an error: a partial list is
// "unknown", never "empty". The filter and every listed id are compared in
// canonical form, and fn sees the canonical id.
func eachLive(ctx context.Context, api cp.API, workspaceID string, fn func(cp.Instance) (stop bool, err error)) error {
	workspaceID = store.CanonicalID(workspaceID)
	cursor := ""
	for range maxListPages {
		page, err := api.List(ctx, cp.ListOptions{WorkspaceID: workspaceID, Cursor: cursor})
		if err != nil {
			return err
		}
		for _, inst := range page.Instances {
			inst.WorkspaceID = store.CanonicalID(inst.WorkspaceID)
			if inst.WorkspaceID != workspaceID || !inst.Live() {
				continue
			}
			if stop, err := fn(inst); stop || err != nil {
				return err
			}
		}
		if page.NextCursor == "" {
			return nil
		}
		cursor = page.NextCursor
	}
	return fmt.Errorf("cp: list for workspace %s did not end after %d pages", workspaceID, maxListPages)
}
