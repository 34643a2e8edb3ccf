package app_test

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/molecule-ai/provision-worker/internal/app"
)

// composeFile is read from the module root.
const composeFile = "../../docker-compose.yml"

type composeService struct {
	Build       any        `yaml:"build"`
	Image       string     `yaml:"image"`
	Command     []string   `yaml:"command"`
	Environment envList    `yaml:"environment"`
	Healthcheck *yaml.Node `yaml:"healthcheck"`
	DependsOn   any        `yaml:"depends_on"`
	Volumes     []string   `yaml:"volumes"`
	Profiles    []string   `yaml:"profiles"`
	Ports       []string   `yaml:"ports"`
}

type composeDoc struct {
	Services map[string]composeService `yaml:"services"`
}

// envList accepts both compose forms: a map, or a list of K=V.
type envList map[string]string

func (e *envList) UnmarshalYAML(n *yaml.Node) error {
	*e = envList{}
	switch n.Kind {
	case yaml.MappingNode:
		m := map[string]string{}
		if err := n.Decode(&m); err != nil {
			return err
		}
		*e = m
	case yaml.SequenceNode:
		var l []string
		if err := n.Decode(&l); err != nil {
			return err
		}
		for _, kv := range l {
			k, v, _ := strings.Cut(kv, "=")
			(*e)[k] = v
		}
	default:
		return errors.New("environment: want a map or a list")
	}
	return nil
}

func readCompose(t *testing.T) composeDoc {
	t.Helper()
	b, err := os.ReadFile(composeFile)
	require.NoError(t, err)
	var doc composeDoc
	require.NoError(t, yaml.Unmarshal(b, &doc))
	require.NotEmpty(t, doc.Services)
	return doc
}

// buildCommands builds every cmd/ binary once, as the Dockerfile does.
func buildCommands(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", dir+"/", "../../cmd/...")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return dir
}

// checkCommand runs the service's command with --help appended: an
// unknown binary, subcommand or flag fails to parse (exit 2), a real one
// prints its usage and exits 0. It returns the usage text.
func checkCommand(bin string, command []string) (string, error) {
	if len(command) == 0 {
		return "", errors.New("no command")
	}
	path := filepath.Join(bin, command[0])
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("%s is not a binary of cmd/", command[0])
	}
	if len(command) > 1 && command[0] == "worker" && command[1] == "migrate" {
		if len(command) < 3 || !slices.Contains([]string{"up", "down", "status"}, command[2]) {
			return "", fmt.Errorf("worker migrate wants up, down or status, got %q", command[2:])
		}
	}
	c := exec.Command(path, append(slices.Clone(command[1:]), "--help")...)
	c.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, err := c.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%q --help: %w: %s", command, err, out)
	}
	return string(out), nil
}

// allowedEnv is what the service's command reads. The Go commands say so
// through app's lists; cpsim (a main package) through its --help, which
// names every variable it reads.
func allowedEnv(command []string, help string) []string {
	switch {
	case command[0] == "worker" && len(command) > 1 && command[1] == "migrate":
		return app.MigrateEnvNames()
	case command[0] == "worker":
		return app.WorkerEnvNames()
	case command[0] == "enqueue":
		return app.EnqueueEnvNames()
	}
	return regexp.MustCompile(`\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b`).FindAllString(help, -1)
}

func TestCompose_CommandsAndEnvExistInTheBinaries(t *testing.T) {
	t.Parallel()
	doc := readCompose(t)
	bin := buildCommands(t)
	ours := 0
	for name, svc := range doc.Services {
		if svc.Build == nil {
			require.NotEmpty(t, svc.Image, "service %s: neither build nor image", name)
			continue // a stock image (Postgres): its variables are its own
		}
		ours++
		help, err := checkCommand(bin, svc.Command)
		require.NoError(t, err, "service %s", name)
		allowed := allowedEnv(svc.Command, help)
		for k := range svc.Environment {
			require.Contains(t, allowed, k, "service %s sets %s, which %s does not read", name, k, svc.Command[0])
		}
	}
	require.GreaterOrEqual(t, ours, 4, "migrate, two workers and cpsim are built from the Dockerfile")
}

// The check above must be able to fail: a misspelt variable, an unknown
// flag or binary, a wrong migrate verb are each caught.
func TestCompose_CheckCatchesMistakes(t *testing.T) {
	t.Parallel()
	bin := buildCommands(t)
	for _, command := range [][]string{
		{"workr"}, {"worker", "--no-such-flag"}, {"worker", "migrate", "sideways"},
		{"cpsim", "--no-such-flag"}, {"enqueue", "no-such-subcommand"},
	} {
		_, err := checkCommand(bin, command)
		require.Error(t, err, "%q", command)
	}
	require.NotContains(t, app.WorkerEnvNames(), "WORKER_HTTP_ADRR")
	help, err := checkCommand(bin, []string{"cpsim"})
	require.NoError(t, err)
	require.NotContains(t, allowedEnv([]string{"cpsim"}, help), "CPSIM_FAULT_500")
	require.Contains(t, allowedEnv([]string{"cpsim"}, help), "CPSIM_FAULT_5XX")
}

func TestCompose_HasTheTopologyOperatorsExpect(t *testing.T) {
	t.Parallel()
	doc := readCompose(t)
	var workers, migrates, sims int
	for name, svc := range doc.Services {
		if svc.Build == nil {
			continue
		}
		isMigrate := len(svc.Command) > 1 && svc.Command[1] == "migrate"
		switch {
		case svc.Command[0] == "worker" && isMigrate:
			migrates++
		case svc.Command[0] == "worker":
			workers++
			require.NotNil(t, svc.Healthcheck, "worker %s needs a health check", name)
			require.Equal(t, "operator", svc.Environment["RIVER_BASIC_AUTH_USER"],
				"off loopback the worker refuses to start without UI credentials")
			require.NotEmpty(t, svc.Environment["RIVER_BASIC_AUTH_PASS"])
			require.NotNil(t, svc.DependsOn, "workers wait for the migration")
		case svc.Command[0] == "cpsim":
			sims++
			require.NotNil(t, svc.Healthcheck, "cpsim needs a health check")
		}
	}
	require.Equal(t, 1, migrates)
	require.Equal(t, 2, workers)
	require.Equal(t, 1, sims)
	require.NotNil(t, doc.Services["postgres"].Healthcheck)
}

// Finding 10: the runtime image was alpine:3.20, out of support (no
// security fixes). Every base image is a supported Alpine (3.22 or
// later, as of December 2026) or the Go build image, and each FROM is
// either pinned by digest or takes its reference from a build ARG, so
// a digest-pinned reference can be passed without editing the file.
func TestDockerfile_BaseImagesAreSupportedAndPinnable(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../Dockerfile")
	require.NoError(t, err)
	args := map[string]string{}
	var froms []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 2 && f[0] == "ARG":
			k, v, _ := strings.Cut(f[1], "=")
			args[k] = v
		case len(f) >= 2 && f[0] == "FROM":
			froms = append(froms, f[1])
		}
	}
	require.Len(t, froms, 2, "a build stage and a runtime stage")
	alpine := regexp.MustCompile(`^alpine:3\.(\d+)(@sha256:[0-9a-f]{64})?$`)
	for _, from := range froms {
		ref := from
		if m := regexp.MustCompile(`^\$\{(\w+)\}$`).FindStringSubmatch(from); m != nil {
			ref = args[m[1]]
			require.NotEmpty(t, ref, "FROM %s has a default", from)
		} else {
			require.Regexp(t, `@sha256:[0-9a-f]{64}$`, from, "a literal FROM is pinned by digest")
		}
		if m := alpine.FindStringSubmatch(ref); m != nil {
			minor := 0
			_, err := fmt.Sscan(m[1], &minor)
			require.NoError(t, err)
			require.GreaterOrEqual(t, minor, 22, "%s is out of support", ref)
			continue
		}
		require.Regexp(t, `^golang:1\.\d+-(bookworm|trixie)(@sha256:[0-9a-f]{64})?$`, ref)
	}
}

// Issue 16 (5): compose shipped `${RIVER_BASIC_AUTH_PASS:-change-me}`, so
// a forgotten variable started River UI (which can cancel every stop)
// behind a password anyone can read in this repository. Every worker takes
// the password from `${RIVER_BASIC_AUTH_PASS:?message}`, which makes
// compose refuse to start when it is unset or empty, and no default for
// it is written anywhere in the file.
func TestCompose_RefusesToStartWithoutUIPassword(t *testing.T) {
	t.Parallel()
	doc := readCompose(t)
	required := regexp.MustCompile(`^\$\{RIVER_BASIC_AUTH_PASS:\?[^}]+\}$`)
	workers := 0
	for name, svc := range doc.Services {
		if len(svc.Command) == 0 || svc.Command[0] != "worker" || slices.Contains(svc.Command, "migrate") {
			continue
		}
		workers++
		require.Regexp(t, required, svc.Environment["RIVER_BASIC_AUTH_PASS"],
			"service %s: the UI password must be required, with a message, and have no default", name)
	}
	require.Equal(t, 2, workers)
	raw, err := os.ReadFile(composeFile)
	require.NoError(t, err)
	require.NotRegexp(t, `\$\{RIVER_BASIC_AUTH_PASS:?[-=+]`, string(raw), "a default for the UI password")
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	require.Contains(t, string(readme), "Compose refuses to\nstart without `RIVER_BASIC_AUTH_PASS`")
}

// composeRoot is the directory compose resolves relative mounts against.
const composeRoot = "../.."

// bindMounts returns a service's bind mounts as host source (relative to
// the compose file, as written) → container path; named volumes are left
// out.
func bindMounts(svc composeService) map[string]string {
	out := map[string]string{}
	for _, v := range svc.Volumes {
		src, rest, _ := strings.Cut(v, ":")
		if !strings.HasPrefix(src, "./") && !strings.HasPrefix(src, "../") && !strings.HasPrefix(src, "/") {
			continue
		}
		dst, _, _ := strings.Cut(rest, ":")
		out[src] = dst
	}
	return out
}

// missingMounts lists the bind-mount sources of doc that do not exist
// under root: compose would create an empty directory in their place and
// Prometheus or Grafana would start without its rules or dashboard.
func missingMounts(doc composeDoc, root string) []string {
	var missing []string
	for name, svc := range doc.Services {
		for src := range bindMounts(svc) {
			if _, err := os.Stat(filepath.Join(root, src)); err != nil {
				missing = append(missing, name+": "+src)
			}
		}
	}
	return missing
}

func TestCompose_MountedFilesExist(t *testing.T) {
	t.Parallel()
	doc := readCompose(t)
	mounts := 0
	for _, svc := range doc.Services {
		mounts += len(bindMounts(svc))
	}
	require.GreaterOrEqual(t, mounts, 5, "Prometheus' config and rules, Grafana's provisioning and dashboard")
	require.Empty(t, missingMounts(doc, composeRoot))

	// The check can fail: a misspelt source is reported.
	bad := composeDoc{Services: map[string]composeService{"p": {Volumes: []string{
		"./deploy/prometheus/alert.yml:/etc/prometheus/alerts.yml:ro", "pgdata:/var/lib/postgresql/data"}}}}
	require.Equal(t, []string{"p: ./deploy/prometheus/alert.yml"}, missingMounts(bad, composeRoot))
}

// hostFor returns the host source mounted at container path dst (or at a
// directory holding it) in svc, with the rest of the path appended.
func hostFor(svc composeService, dst string) (string, bool) {
	for src, d := range bindMounts(svc) {
		if d == dst {
			return src, true
		}
		if rel, ok := strings.CutPrefix(dst, d+"/"); ok {
			return src + "/" + rel, true
		}
	}
	return "", false
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(composeRoot, path))
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(b, v))
}

// Issue 16 (3): `docker compose --profile observability up` adds a
// Prometheus that scrapes both workers with the rules loaded, and a
// Grafana with the dashboard provisioned. This follows each path from the
// compose file through the container to the file in deploy/.
func TestCompose_ObservabilityProfileScrapesBothWorkersAndLoadsTheRules(t *testing.T) {
	t.Parallel()
	doc := readCompose(t)
	prom, graf := doc.Services["prometheus"], doc.Services["grafana"]
	for name, svc := range map[string]composeService{"prometheus": prom, "grafana": graf} {
		require.Equal(t, []string{"observability"}, svc.Profiles, "%s is only in the profile", name)
		for _, p := range svc.Ports {
			require.True(t, strings.HasPrefix(p, "127.0.0.1:"), "%s publishes on loopback only: %s", name, p)
		}
	}

	// Prometheus: its config and rules are the repository's files.
	var configPath string
	for _, a := range prom.Command {
		if v, ok := strings.CutPrefix(a, "--config.file="); ok {
			configPath = v
		}
	}
	src, ok := hostFor(prom, configPath)
	require.True(t, ok, "prometheus' --config.file %q is mounted", configPath)
	require.Equal(t, "./deploy/prometheus/prometheus.yml", src)
	var cfg struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			MetricsPath   string `yaml:"metrics_path"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	readYAML(t, src, &cfg)
	require.Len(t, cfg.RuleFiles, 1)
	rules, ok := hostFor(prom, cfg.RuleFiles[0])
	require.True(t, ok, "rule file %s is mounted", cfg.RuleFiles[0])
	require.Equal(t, "./deploy/prometheus/alerts.yml", rules)

	var targets, workers []string
	for _, sc := range cfg.ScrapeConfigs {
		require.Contains(t, []string{"", "/metrics"}, sc.MetricsPath)
		for _, st := range sc.StaticConfigs {
			targets = append(targets, st.Targets...)
		}
	}
	for name, svc := range doc.Services {
		if len(svc.Command) == 1 && svc.Command[0] == "worker" {
			_, port, err := net.SplitHostPort(svc.Environment["WORKER_HTTP_ADDR"])
			require.NoError(t, err)
			workers = append(workers, net.JoinHostPort(name, port))
		}
	}
	require.Len(t, workers, 2)
	require.ElementsMatch(t, workers, targets, "Prometheus scrapes every worker replica, at its HTTP address")

	// Grafana: the data source is that Prometheus, the dashboard is ours.
	var ds struct {
		Datasources []struct {
			Type, URL string
		} `yaml:"datasources"`
	}
	dsDir, ok := hostFor(graf, "/etc/grafana/provisioning/datasources")
	require.True(t, ok)
	readYAML(t, dsDir+"/prometheus.yml", &ds)
	require.Len(t, ds.Datasources, 1)
	require.Equal(t, "prometheus", ds.Datasources[0].Type)
	require.Equal(t, "http://prometheus:9090", ds.Datasources[0].URL)
	require.Contains(t, prom.Command, "--web.listen-address=0.0.0.0:9090")

	var dash struct {
		Providers []struct {
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	dashDir, ok := hostFor(graf, "/etc/grafana/provisioning/dashboards")
	require.True(t, ok)
	readYAML(t, dashDir+"/provisioner.yml", &dash)
	require.Len(t, dash.Providers, 1)
	file, ok := hostFor(graf, dash.Providers[0].Options.Path+"/provisioner.json")
	require.True(t, ok, "the dashboard is mounted where the provider reads")
	require.Equal(t, "./deploy/grafana/provisioner.json", file)
	require.Regexp(t, `^\$\{RIVER_BASIC_AUTH_PASS:\?[^}]+\}$`, graf.Environment["GF_SECURITY_ADMIN_PASSWORD"],
		"no Grafana password written in the repository either")
}
