package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// cpsimPackage is the CP simulator the sweep figure runs out of process.
const cpsimPackage = "github.com/molecule-ai/provision-worker/cmd/cpsim"

// buildCPSim builds cmd/cpsim into a temporary directory (the bench runs
// from the module, as `go run ./cmd/bench`) and returns the binary and a
// function removing it.
func buildCPSim(ctx context.Context) (string, func(), error) {
	dir, err := os.MkdirTemp("", "pw-bench-cpsim-")
	if err != nil {
		return "", nil, fmt.Errorf("temp dir for cpsim: %w", err)
	}
	cleanup := func() { _ = os.RemoveAll(dir) }
	bin := filepath.Join(dir, "cpsim")
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, cpsimPackage).CombinedOutput()
	if err != nil {
		cleanup()
		return "", nil, fmt.Errorf("build cpsim (run the bench from the module): %w: %s", err, tail(out, 500))
	}
	return bin, cleanup, nil
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// cpsimProc is a cmd/cpsim process serving a seeded fleet: the fleet
// (about 400 MB at 1M instances) lives in its heap, not the bench's.
type cpsimProc struct {
	cmd  *exec.Cmd
	URL  string
	done chan error // Wait's result
}

// startCPSim starts bin with n running instances of fleet seed
// (cpfake.FleetMember), launched a day ago (older than any grace
// period), no latency and the bench's credentials, and returns once it
// logs that it listens, which it does only after seeding.
func startCPSim(ctx context.Context, bin string, n int, seed uint64) (*cpsimProc, error) {
	cmd := exec.Command(bin, "--addr", "127.0.0.1:0", "--latency", "0s",
		"--fleet", strconv.Itoa(n), "--fleet-seed", strconv.FormatUint(seed, 10), "--fleet-age", "24h", "--seed", "1")
	cmd.Env = []string{"MOLECULE_ORG_ID=" + benchOrg, "MOLECULE_CP_SHARED_SECRET=" + benchSecret,
		"ADMIN_TOKEN=" + benchAdmin, "CP_ADMIN_API_TOKEN=" + benchAPIKey}
	logs, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("cpsim stderr: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start cpsim: %w", err)
	}
	p := &cpsimProc{cmd: cmd, done: make(chan error, 1)}
	found := make(chan string, 1)
	go p.readLogs(logs, found)
	go func() { p.done <- cmd.Wait() }()
	select {
	case p.URL = <-found:
	case err := <-p.done:
		p.done <- err
		return nil, fmt.Errorf("cpsim exited before listening: %v", err)
	case <-ctx.Done():
		p.Stop()
		return nil, fmt.Errorf("waiting for cpsim: %w", ctx.Err())
	}
	if p.URL == "" {
		p.Stop()
		return nil, errors.New("cpsim logged no url")
	}
	return p, nil
}

// readLogs sends the url of the "cpsim listening" line, then drains the
// request lines (an undrained pipe would stall cpsim).
func (p *cpsimProc) readLogs(logs io.Reader, found chan<- string) {
	lines := bufio.NewScanner(logs)
	for lines.Scan() {
		var l struct{ Msg, URL string }
		if json.Unmarshal(lines.Bytes(), &l) == nil && l.Msg == "cpsim listening" {
			found <- l.URL
			break
		}
	}
	_, _ = io.Copy(io.Discard, logs)
}

// Stop ends the process (SIGTERM, then SIGKILL after 5 s) and waits for it.
func (p *cpsimProc) Stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}
