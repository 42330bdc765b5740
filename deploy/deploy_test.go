package deploy_test

// These tests read the deployment files as data and check that they agree:
// compose services point at services that exist, on the ports those services
// listen on; Prometheus scrapes what the relays serve; the dashboard and the
// alert rules ask only for metrics the relay exposes; the image, the unit
// file, the example config and the Kubernetes manifests use the same ports
// and paths. Nothing here needs Docker or a network.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/redis-relay/redis-relay/metrics"
	"github.com/redis-relay/redis-relay/proxy"
)

// Ports the relay listens on when no flag says otherwise, and redis-server's.
const (
	relayDefaultPort = 6380
	redisDefaultPort = 6379
)

// root is the repository root; go test runs in deploy/.
func root(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func readFile(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root(t), filepath.FromSlash(rel)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func exists(t *testing.T, rel string) bool {
	t.Helper()
	_, err := os.Stat(filepath.Join(root(t), filepath.FromSlash(rel)))
	return err == nil
}

func parseYAML(t *testing.T, rel string, v any) {
	t.Helper()
	if err := yaml.Unmarshal(readFile(t, rel), v); err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
}

// ---- docker-compose.yml ----

type compose struct {
	Services map[string]service `yaml:"services"`
	Volumes  map[string]any     `yaml:"volumes"`
}

type service struct {
	Image       string            `yaml:"image"`
	Build       any               `yaml:"build"`
	Entrypoint  any               `yaml:"entrypoint"`
	Command     any               `yaml:"command"`
	Ports       []string          `yaml:"ports"`
	Volumes     []string          `yaml:"volumes"`
	Environment map[string]string `yaml:"environment"`
	DependsOn   []string          `yaml:"depends_on"`
}

// words splits a command given as a list or as one string; a shell script
// passed with sh -c is split into words too.
func words(v any) []string {
	var out []string
	switch c := v.(type) {
	case string:
		out = strings.Fields(c)
	case []any:
		for _, w := range c {
			out = append(out, words(w)...)
		}
	}
	return out
}

func (s service) args() []string { return append(words(s.Entrypoint), words(s.Command)...) }

// flag returns the value after name in args.
func flag(args []string, name string) (string, bool) {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1], true
		}
	}
	return "", false
}

// build returns the build context and Dockerfile of s, relative to the root.
func (s service) build() (context, dockerfile string, ok bool) {
	switch b := s.Build.(type) {
	case string:
		return b, path.Join(b, "Dockerfile"), true
	case map[string]any:
		ctx, _ := b["context"].(string)
		if ctx == "" {
			ctx = "."
		}
		df, _ := b["dockerfile"].(string)
		if df == "" {
			df = "Dockerfile"
		}
		return ctx, path.Join(ctx, df), true
	}
	return "", "", false
}

func (s service) isRelay() bool {
	_, df, ok := s.build()
	return ok && path.Clean(df) == "deploy/Dockerfile"
}

// listenPort is the port a relay or redis-server service takes connections
// on inside its container.
func (s service) listenPort(t *testing.T) int {
	t.Helper()
	port := redisDefaultPort
	if s.isRelay() {
		port = relayDefaultPort
	}
	if p, ok := flag(s.args(), "--port"); ok {
		port = atoi(t, p)
	}
	return port
}

// metricsPort is the port of a relay's --metrics-addr, or 0.
func (s service) metricsPort(t *testing.T) int {
	t.Helper()
	addr, ok := flag(s.args(), "--metrics-addr")
	if !ok {
		return 0
	}
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("--metrics-addr %q: %v", addr, err)
	}
	return atoi(t, p)
}

// mountSource maps a path inside s's container to the repository path
// bind-mounted there.
func (s service) mountSource(containerPath string) (string, bool) {
	for _, v := range s.Volumes {
		src, dst, _ := strings.Cut(v, ":")
		dst, _, _ = strings.Cut(dst, ":")
		if !strings.HasPrefix(src, ".") && !strings.HasPrefix(src, "/") {
			continue // a named volume
		}
		if rel, ok := strings.CutPrefix(containerPath, dst); ok && (rel == "" || rel[0] == '/') {
			return path.Clean(path.Join(src, rel)), true
		}
	}
	return "", false
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("port %q: %v", s, err)
	}
	return n
}

func loadCompose(t *testing.T) compose {
	t.Helper()
	var c compose
	parseYAML(t, "docker-compose.yml", &c)
	if len(c.Services) == 0 {
		t.Fatal("docker-compose.yml defines no services")
	}
	return c
}

func relayServices(t *testing.T, c compose) []string {
	t.Helper()
	var names []string
	for name, s := range c.Services {
		if s.isRelay() {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	if len(names) == 0 {
		t.Fatal("no compose service builds deploy/Dockerfile")
	}
	return names
}

func TestComposePaths(t *testing.T) {
	c := loadCompose(t)
	for name, s := range c.Services {
		if ctx, df, ok := s.build(); ok {
			if !exists(t, ctx) {
				t.Errorf("%s: build context %s does not exist", name, ctx)
			}
			if !exists(t, df) {
				t.Errorf("%s: Dockerfile %s does not exist", name, df)
			}
		} else if s.Image == "" {
			t.Errorf("%s: neither image nor build", name)
		}
		if s.Image != "" && !s.isRelay() {
			if _, tag, ok := strings.Cut(s.Image, ":"); !ok || tag == "latest" {
				t.Errorf("%s: image %s is not pinned to a tag", name, s.Image)
			}
		}
		for _, v := range s.Volumes {
			src, _, ok := strings.Cut(v, ":")
			if !ok {
				t.Errorf("%s: volume %q is not source:target", name, v)
				continue
			}
			if strings.HasPrefix(src, ".") || strings.HasPrefix(src, "/") {
				if !exists(t, src) {
					t.Errorf("%s: mounts %s, which does not exist", name, src)
				}
			} else if _, ok := c.Volumes[src]; !ok {
				t.Errorf("%s: named volume %s is not declared under volumes:", name, src)
			}
		}
		for _, d := range s.DependsOn {
			if _, ok := c.Services[d]; !ok {
				t.Errorf("%s: depends on %s, which is not a service", name, d)
			}
		}
	}
}

// Every replicaof names a service, on the port that service listens on, and
// following replicaof from any service ends at a master.
func TestComposeReplication(t *testing.T) {
	c := loadCompose(t)
	upstream := map[string]string{}
	for name, s := range c.Services {
		args := s.args()
		for i, a := range args {
			if a != "--replicaof" && a != "replicaof" {
				continue
			}
			var host, port string
			switch {
			case i+1 < len(args) && strings.Contains(args[i+1], ":"):
				var err error
				if host, port, err = net.SplitHostPort(args[i+1]); err != nil {
					t.Errorf("%s: replicaof %q: %v", name, args[i+1], err)
					continue
				}
			case i+2 < len(args):
				host, port = args[i+1], args[i+2]
			default:
				t.Errorf("%s: replicaof without an address", name)
				continue
			}
			target, ok := c.Services[host]
			if !ok {
				t.Errorf("%s: replicaof %s, which is not a service", name, host)
				continue
			}
			if want := target.listenPort(t); atoi(t, port) != want {
				t.Errorf("%s: replicaof %s port %s, but %s listens on %d", name, host, port, host, want)
			}
			upstream[name] = host
		}
		if s.isRelay() && upstream[name] == "" {
			t.Errorf("%s: a relay needs --replicaof", name)
		}
	}
	for name := range upstream {
		seen := map[string]bool{}
		for n := name; upstream[n] != ""; n = upstream[n] {
			if seen[n] {
				t.Errorf("%s: replication loop through %s", name, n)
				break
			}
			seen[n] = true
		}
	}
	relays := relayServices(t, c)
	chained := false
	for _, r := range relays {
		if slices.Contains(relays, upstream[r]) {
			chained = true
		}
	}
	if !chained {
		t.Error("the demo has no relay chained behind another relay")
	}
}

func TestComposePorts(t *testing.T) {
	c := loadCompose(t)
	owner := map[string]string{}
	for name, s := range c.Services {
		for _, p := range s.Ports {
			parts := strings.Split(p, ":")
			if len(parts) != 3 {
				t.Errorf("%s: port %q is not 127.0.0.1:host:container", name, p)
				continue
			}
			if parts[0] != "127.0.0.1" {
				t.Errorf("%s: port %q is published beyond loopback", name, p)
			}
			if prev, dup := owner[parts[1]]; dup {
				t.Errorf("host port %s is published by both %s and %s", parts[1], prev, name)
			}
			owner[parts[1]] = name
			if s.isRelay() {
				cp := atoi(t, parts[2])
				if cp != s.listenPort(t) && cp != s.metricsPort(t) {
					t.Errorf("%s: publishes container port %d, where the relay does not listen", name, cp)
				}
			}
		}
	}
}

// ---- Dockerfile ----

type dockerfile struct {
	stages     []string            // image of each FROM
	final      map[string][]string // instruction -> arguments, last stage only
	entrypoint []string
	cmd        []string
	buildCmds  []string // RUN lines of every stage
}

func loadDockerfile(t *testing.T) dockerfile {
	t.Helper()
	d := dockerfile{final: map[string][]string{}}
	var lines []string
	var cur strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(readFile(t, "deploy/Dockerfile")))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && cur.Len() == 0) {
			continue
		}
		if body, ok := strings.CutSuffix(line, "\\"); ok {
			cur.WriteString(body + " ")
			continue
		}
		cur.WriteString(line)
		lines = append(lines, cur.String())
		cur.Reset()
	}
	for _, l := range lines {
		instr, rest, _ := strings.Cut(l, " ")
		instr = strings.ToUpper(instr)
		rest = strings.TrimSpace(rest)
		switch instr {
		case "FROM":
			d.stages = append(d.stages, strings.Fields(rest)[0])
			d.final = map[string][]string{}
		case "RUN":
			d.buildCmds = append(d.buildCmds, rest)
		case "ENTRYPOINT", "CMD":
			var v []string
			if err := json.Unmarshal([]byte(rest), &v); err != nil {
				t.Fatalf("Dockerfile %s is not in exec (JSON) form: %v", instr, err)
			}
			if instr == "CMD" {
				d.cmd = v
			} else {
				d.entrypoint = v
			}
		}
		d.final[instr] = append(d.final[instr], strings.Fields(rest)...)
	}
	return d
}

func TestDockerfile(t *testing.T) {
	d := loadDockerfile(t)
	if len(d.stages) < 2 {
		t.Fatalf("Dockerfile has %d stages, want a builder and a runtime stage", len(d.stages))
	}
	// The builder's Go matches go.mod.
	gomod := string(readFile(t, "go.mod"))
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+\.\d+)\s*$`).FindStringSubmatch(gomod)
	if m == nil {
		t.Fatal("go.mod has no go line with a patch version")
	}
	// Exactly go.mod's version: golang:1.26 may be an older cached 1.26.x.
	if tag, _, _ := strings.Cut(strings.TrimPrefix(d.stages[0], "golang:"), "-"); !strings.HasPrefix(d.stages[0], "golang:") || tag != m[1] {
		t.Errorf("builder image %s is not golang:%s, go.mod's go line", d.stages[0], m[1])
	}
	build := strings.Join(d.buildCmds, "\n")
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "./cmd/redis-relay"} {
		if !strings.Contains(build, want) {
			t.Errorf("Dockerfile build lacks %s", want)
		}
	}
	if !exists(t, "cmd/redis-relay") {
		t.Error("Dockerfile builds ./cmd/redis-relay, which does not exist")
	}
	if u := d.final["USER"]; len(u) == 0 || u[0] == "root" || u[0] == "0" || strings.HasPrefix(u[0], "0:") {
		if !strings.HasSuffix(d.stages[len(d.stages)-1], ":nonroot") {
			t.Errorf("runtime stage runs as root (USER %v)", u)
		}
	}
	if !slices.Equal(d.entrypoint, []string{"/redis-relay"}) {
		t.Errorf("ENTRYPOINT = %q, want [/redis-relay]", d.entrypoint)
	}
	exposed := map[int]bool{}
	for _, p := range d.final["EXPOSE"] {
		p, _, _ = strings.Cut(p, "/")
		exposed[atoi(t, p)] = true
	}
	if len(d.cmd) == 0 || d.cmd[0] != "run" {
		t.Fatalf("CMD = %q, want run ...", d.cmd)
	}
	img := service{Build: "deploy", Command: anyList(d.cmd)}
	if mp := img.metricsPort(t); mp == 0 || !exposed[mp] {
		t.Errorf("CMD serves metrics on port %d, which EXPOSE %v lacks", mp, d.final["EXPOSE"])
	}
	dataDir, _ := flag(d.cmd, "--dir")
	if !slices.Contains(d.final["VOLUME"], dataDir) {
		t.Errorf("CMD --dir %q is not a VOLUME (%v)", dataDir, d.final["VOLUME"])
	}

	// Compose runs the image with its own command: the same ports and data dir.
	c := loadCompose(t)
	for _, name := range relayServices(t, c) {
		s := c.Services[name]
		for _, p := range []int{s.listenPort(t), s.metricsPort(t)} {
			if !exposed[p] {
				t.Errorf("%s: listens on %d, which the Dockerfile does not EXPOSE", name, p)
			}
		}
		if s.metricsPort(t) == 0 {
			t.Errorf("%s: no --metrics-addr", name)
		}
		dir, _ := flag(s.args(), "--dir")
		mounted := false
		for _, v := range s.Volumes {
			_, dst, _ := strings.Cut(v, ":")
			dst, _, _ = strings.Cut(dst, ":")
			mounted = mounted || dst == dir
		}
		if dir != dataDir || !mounted {
			t.Errorf("%s: --dir %q, want the image's volume %s with a volume mounted there", name, dir, dataDir)
		}
	}
}

func anyList(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// ---- metric names ----

// fakeSource stands in for the relay only so that a registry can be built
// and its family names listed.
type fakeSource struct{}

func (fakeSource) Status() proxy.Status          { return proxy.Status{} }
func (fakeSource) Replicas() []proxy.ReplicaInfo { return nil }

// knownMetrics is every family name a relay's /metrics can carry, plus the
// series Prometheus itself adds for each target.
func knownMetrics(t *testing.T) map[string]bool {
	t.Helper()
	known := map[string]bool{"up": true, "scrape_duration_seconds": true, "scrape_samples_scraped": true}
	for _, n := range metrics.Names() {
		known[n] = true
	}
	reg := metrics.NewRegistry(fakeSource{})
	metrics.Handler(reg) // registers the promhttp_* families
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		known[mf.GetName()] = true
	}
	return known
}

// metricRef matches what can only be a metric name in our PromQL: the
// relay's prefix, the Go client's and Prometheus's own.
var metricRef = regexp.MustCompile(`\b(?:redis_relay|process|go|promhttp)_[a-zA-Z0-9_]+|\bup\b`)

// checkPromQL reports metric names in expr that the relay does not expose.
func checkPromQL(t *testing.T, where, expr string, known map[string]bool, used map[string]bool) {
	t.Helper()
	// Label values and matchers are not names: drop quoted strings first.
	bare := regexp.MustCompile(`"(?:[^"\\]|\\.)*"`).ReplaceAllString(expr, `""`)
	for _, name := range metricRef.FindAllString(bare, -1) {
		used[name] = true
		if known[name] {
			continue
		}
		if strings.HasPrefix(name, "process_") && runtime.GOOS != "linux" {
			continue // the process collector reports nothing elsewhere
		}
		t.Errorf("%s: %s is not a metric the relay exposes (expr %q)", where, name, expr)
	}
}

// ---- Grafana ----

// walkJSON calls f for every string value under key in v.
func walkJSON(v any, f func(key, val string, parent map[string]any)) {
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			if s, ok := c.(string); ok {
				f(k, s, x)
			}
			walkJSON(c, f)
		}
	case []any:
		for _, c := range x {
			walkJSON(c, f)
		}
	}
}

func TestDashboard(t *testing.T) {
	const rel = "deploy/grafana/dashboards/redis-relay.json"
	var dash map[string]any
	if err := json.Unmarshal(readFile(t, rel), &dash); err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	if v, _ := dash["schemaVersion"].(float64); v < 36 {
		t.Errorf("schemaVersion = %v, want a current Grafana schema", dash["schemaVersion"])
	}
	if uid, _ := dash["uid"].(string); uid == "" {
		t.Error("dashboard has no uid")
	}

	known := knownMetrics(t)
	used := map[string]bool{}
	exprs := 0
	walkJSON(dash, func(key, val string, _ map[string]any) {
		switch key {
		case "expr", "definition":
			exprs++
			checkPromQL(t, rel, val, known, used)
		case "query": // a variable's query, inside or outside an object
			checkPromQL(t, rel, val, known, used)
		}
	})
	if exprs == 0 {
		t.Fatal("the dashboard has no PromQL")
	}
	for _, want := range []string{
		"redis_relay_upstream_link_up", "redis_relay_master_repl_offset",
		"redis_relay_replica_lag_bytes", "redis_relay_replica_lag_seconds", "redis_relay_connected_replicas",
		"redis_relay_full_syncs_served_total", "redis_relay_partial_syncs_served_total",
		"redis_relay_upstream_full_syncs_total", "redis_relay_upstream_partial_syncs_total",
		"redis_relay_net_input_bytes_total", "redis_relay_net_output_bytes_total",
		"redis_relay_log_retained_bytes", "redis_relay_snapshot_age_seconds", "redis_relay_snapshot_size_bytes",
		"redis_relay_snapshot_keys", "redis_relay_guard_tripped", "redis_relay_replica_disconnects_total",
		"redis_relay_commands_relayed_total",
	} {
		if !used[want] {
			t.Errorf("no panel charts %s", want)
		}
	}

	// Panels use the DS_PROMETHEUS variable, or the provisioned uid; ids are unique.
	vars := map[string]bool{}
	if tl, ok := dash["templating"].(map[string]any); ok {
		list, _ := tl["list"].([]any)
		for _, v := range list {
			if m, ok := v.(map[string]any); ok {
				name, _ := m["name"].(string)
				vars[name] = true
			}
		}
	}
	walkJSON(dash, func(key, val string, parent map[string]any) {
		if key != "uid" || parent["type"] != "prometheus" {
			return
		}
		switch val {
		case "${DS_PROMETHEUS}":
			if !vars["DS_PROMETHEUS"] {
				t.Error("panels use ${DS_PROMETHEUS}, which templating does not define")
			}
		case provisionedDatasourceUID(t):
		default:
			t.Errorf("datasource uid %q is neither ${DS_PROMETHEUS} nor the provisioned one", val)
		}
	})
	ids := map[float64]bool{}
	panels, _ := dash["panels"].([]any)
	for _, p := range panels {
		m, _ := p.(map[string]any)
		id, _ := m["id"].(float64)
		if ids[id] {
			t.Errorf("panel id %v is used twice", id)
		}
		ids[id] = true
	}
}

type datasource struct {
	UID  string `yaml:"uid"`
	Type string `yaml:"type"`
	URL  string `yaml:"url"`
}

func loadDatasources(t *testing.T) []datasource {
	t.Helper()
	var ds struct {
		Datasources []datasource `yaml:"datasources"`
	}
	parseYAML(t, "deploy/grafana/provisioning/datasources/prometheus.yml", &ds)
	return ds.Datasources
}

func provisionedDatasourceUID(t *testing.T) string {
	t.Helper()
	for _, d := range loadDatasources(t) {
		if d.Type == "prometheus" {
			return d.UID
		}
	}
	t.Fatal("no prometheus datasource is provisioned")
	return ""
}

func TestGrafanaProvisioning(t *testing.T) {
	c := loadCompose(t)
	g, ok := c.Services["grafana"]
	if !ok {
		t.Fatal("compose has no grafana service")
	}
	if _, ok := c.Services["prometheus"]; !ok {
		t.Fatal("compose has no prometheus service")
	}
	if src, ok := g.mountSource("/etc/grafana/provisioning"); !ok || src != "deploy/grafana/provisioning" {
		t.Errorf("grafana mounts %q at /etc/grafana/provisioning, want deploy/grafana/provisioning", src)
	}

	for _, d := range loadDatasources(t) {
		host := strings.TrimPrefix(d.URL, "http://")
		h, port, err := net.SplitHostPort(host)
		if err != nil {
			t.Errorf("datasource url %q: %v", d.URL, err)
			continue
		}
		if h != "prometheus" || port != "9090" {
			t.Errorf("datasource url %q is not the compose prometheus service", d.URL)
		}
	}
	if uid := provisionedDatasourceUID(t); uid != "prometheus" {
		t.Errorf("provisioned datasource uid = %q, want prometheus", uid)
	}

	var prov struct {
		Providers []struct {
			Type    string `yaml:"type"`
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	parseYAML(t, "deploy/grafana/provisioning/dashboards/redis-relay.yml", &prov)
	if len(prov.Providers) == 0 {
		t.Fatal("no dashboard provider")
	}
	for _, pr := range prov.Providers {
		src, ok := g.mountSource(pr.Options.Path)
		if pr.Type != "file" || !ok || src != "deploy/grafana/dashboards" {
			t.Errorf("dashboard provider %s path %s is not where compose mounts deploy/grafana/dashboards (%q)", pr.Type, pr.Options.Path, src)
		}
	}
	if home := g.Environment["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]; home != "" {
		if src, ok := g.mountSource(home); !ok || !exists(t, src) {
			t.Errorf("grafana home dashboard %s is not a mounted file", home)
		}
	}
}

// ---- Prometheus ----

func TestPrometheusScrapesRelays(t *testing.T) {
	c := loadCompose(t)
	var cfg struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			MetricsPath   string `yaml:"metrics_path"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	parseYAML(t, "deploy/prometheus/prometheus.yml", &cfg)
	scraped := map[string]bool{}
	for _, sc := range cfg.ScrapeConfigs {
		if sc.MetricsPath != "" && sc.MetricsPath != "/metrics" {
			t.Errorf("job %s scrapes %s; the relay serves /metrics", sc.JobName, sc.MetricsPath)
		}
		for _, st := range sc.StaticConfigs {
			for _, target := range st.Targets {
				host, port, err := net.SplitHostPort(target)
				if err != nil {
					t.Errorf("target %q: %v", target, err)
					continue
				}
				s, ok := c.Services[host]
				if !ok {
					t.Errorf("target %s is not a compose service", target)
					continue
				}
				if mp := s.metricsPort(t); mp == 0 || atoi(t, port) != mp {
					t.Errorf("target %s, but %s serves metrics on port %d", target, host, mp)
				}
				scraped[host] = true
			}
		}
	}
	for _, r := range relayServices(t, c) {
		if !scraped[r] {
			t.Errorf("relay %s is not scraped", r)
		}
	}
	prom, ok := c.Services["prometheus"]
	if !ok {
		t.Fatal("compose has no prometheus service")
	}
	if src, ok := prom.mountSource("/etc/prometheus/prometheus.yml"); !ok || src != "deploy/prometheus/prometheus.yml" {
		t.Errorf("prometheus does not mount deploy/prometheus at /etc/prometheus (%q)", src)
	}
	if len(cfg.RuleFiles) == 0 {
		t.Error("prometheus.yml loads no rule files")
	}
	for _, rf := range cfg.RuleFiles {
		if src, ok := prom.mountSource(rf); !ok || !exists(t, src) {
			t.Errorf("rule file %s is not a mounted file of the repository", rf)
		}
	}
}

func TestAlertRules(t *testing.T) {
	var rules struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	parseYAML(t, "deploy/prometheus/alerts.yml", &rules)
	known := knownMetrics(t)
	used := map[string]bool{}
	alerts := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			where := "alert " + r.Alert
			if r.Alert == "" {
				t.Errorf("group %s has a rule without alert:", g.Name)
			}
			if alerts[r.Alert] {
				t.Errorf("%s is defined twice", where)
			}
			alerts[r.Alert] = true
			if strings.TrimSpace(r.Expr) == "" {
				t.Errorf("%s has no expr", where)
			}
			checkPromQL(t, where, r.Expr, known, used)
			if d, err := time.ParseDuration(r.For); err != nil || d < 0 {
				t.Errorf("%s: for: %q is not a duration", where, r.For)
			}
			if sev := r.Labels["severity"]; sev != "critical" && sev != "warning" && sev != "info" {
				t.Errorf("%s: severity %q", where, sev)
			}
			if strings.TrimSpace(r.Annotations["description"]) == "" {
				t.Errorf("%s has no description", where)
			}
		}
	}
	for _, want := range []string{
		"RedisRelayUpstreamDown", "RedisRelayReplicaLagHigh", "RedisRelayReplicaFellBehind",
		"RedisRelayGuardTripped", "RedisRelaySnapshotStale",
	} {
		if !alerts[want] {
			t.Errorf("no alert %s", want)
		}
	}
}

// ---- systemd unit and example config ----

// confDirectives reads redis.conf syntax: directive -> arguments, comments
// and blank lines skipped.
func confDirectives(t *testing.T, text string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if _, dup := out[f[0]]; dup {
			t.Errorf("config directive %s appears twice", f[0])
		}
		out[f[0]] = f[1:]
	}
	return out
}

func checkDirectives(t *testing.T, where string, d map[string][]string) {
	t.Helper()
	// Whether the relay knows each directive is TestRelayAcceptsConfig's
	// question; here only the shape.
	for name, args := range d {
		if len(args) == 0 {
			t.Errorf("%s: %s has no value", where, name)
		}
	}
	if a := d["replicaof"]; a != nil && (len(a) != 2 || atoiOK(a[1]) <= 0) {
		t.Errorf("%s: replicaof %q, want <host> <port>", where, a)
	}
	if a := d["metrics-addr"]; a != nil {
		if _, _, err := net.SplitHostPort(a[0]); err != nil {
			t.Errorf("%s: metrics-addr %q: %v", where, a[0], err)
		}
	}
}

func atoiOK(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return -1
	}
	return n
}

func TestSystemdAndConfig(t *testing.T) {
	unit := map[string][]string{}
	for line := range strings.Lines(string(readFile(t, "deploy/systemd/redis-relay.service"))) {
		line = strings.TrimSpace(line)
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			unit[k] = append(unit[k], v)
		}
	}
	one := func(k string) string {
		if len(unit[k]) == 0 {
			t.Errorf("unit lacks %s=", k)
			return ""
		}
		return unit[k][0]
	}
	exec := strings.Fields(one("ExecStart"))
	if len(exec) < 2 || exec[0] != "/usr/local/bin/redis-relay" || exec[1] != "run" {
		t.Errorf("ExecStart = %q", exec)
	}
	confPath, ok := flag(exec, "--config")
	if !ok {
		t.Error("ExecStart has no --config")
	}
	for k, want := range map[string]string{
		"StateDirectory": "redis-relay", "Restart": "on-failure", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
	} {
		if got := one(k); got != want {
			t.Errorf("%s=%s, want %s", k, got, want)
		}
	}
	one("LimitNOFILE")
	if unit["DynamicUser"] == nil && unit["User"] == nil {
		t.Error("the unit runs as root: set DynamicUser= or User=")
	}

	d := confDirectives(t, string(readFile(t, "deploy/redis-relay.conf.example")))
	checkDirectives(t, "redis-relay.conf.example", d)
	for _, want := range []string{"replicaof", "port", "bind", "dir", "repl-backlog-size", "repl-timeout", "metrics-addr"} {
		if d[want] == nil {
			t.Errorf("redis-relay.conf.example does not set %s", want)
		}
	}
	if dir := d["dir"]; len(dir) == 0 || dir[0] != "/var/lib/"+one("StateDirectory") {
		t.Errorf("example dir %q is not the unit's state directory", dir)
	}
	if path.Base(confPath) != "redis-relay.conf" {
		t.Errorf("unit reads %s; the example is meant to be installed as redis-relay.conf", confPath)
	}
	if p := d["port"]; len(p) == 0 || atoiOK(p[0]) != relayDefaultPort {
		t.Errorf("example port %q, want %d", p, relayDefaultPort)
	}
}

// ---- Kubernetes ----

type k8sObject struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name        string            `yaml:"name"`
		Labels      map[string]string `yaml:"labels"`
		Annotations map[string]string `yaml:"annotations"`
	} `yaml:"metadata"`
	Data      map[string]string `yaml:"data"`
	Resources []string          `yaml:"resources"`
	Spec      struct {
		// Service
		ClusterIP string           `yaml:"clusterIP"`
		Selector  yaml.Node        `yaml:"selector"`
		Ports     []k8sServicePort `yaml:"ports"`
		Type      string           `yaml:"type"`
		// StatefulSet
		ServiceName string `yaml:"serviceName"`
		Template    struct {
			Metadata struct {
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"metadata"`
			Spec struct {
				Containers     []k8sContainer `yaml:"containers"`
				InitContainers []k8sContainer `yaml:"initContainers"`
				Volumes        []struct {
					Name      string `yaml:"name"`
					ConfigMap *struct {
						Name string `yaml:"name"`
					} `yaml:"configMap"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
		VolumeClaimTemplates []struct {
			Metadata struct {
				Name string `yaml:"name"`
			} `yaml:"metadata"`
		} `yaml:"volumeClaimTemplates"`
	} `yaml:"spec"`
}

type k8sServicePort struct {
	Name       string `yaml:"name"`
	Port       int    `yaml:"port"`
	TargetPort any    `yaml:"targetPort"`
}

type k8sProbe struct {
	TCPSocket *struct {
		Port any `yaml:"port"`
	} `yaml:"tcpSocket"`
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"`
	} `yaml:"httpGet"`
}

type k8sContainer struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Ports   []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	ReadinessProbe *k8sProbe `yaml:"readinessProbe"`
	LivenessProbe  *k8sProbe `yaml:"livenessProbe"`
	VolumeMounts   []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
}

// port resolves a named or numbered port of c.
func (c k8sContainer) port(p any) int {
	for _, cp := range c.Ports {
		if p == cp.Name || p == cp.ContainerPort {
			return cp.ContainerPort
		}
	}
	return 0
}

func loadManifests(t *testing.T) []k8sObject {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root(t), "deploy", "kubernetes", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in deploy/kubernetes (%v)", err)
	}
	var objs []k8sObject
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for {
			var o k8sObject
			err := dec.Decode(&o)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", filepath.Base(f), err)
			}
			if o.APIVersion == "" || o.Kind == "" {
				t.Errorf("%s: a document without apiVersion or kind", filepath.Base(f))
			}
			if o.Kind == "Kustomization" {
				for _, r := range o.Resources {
					if !exists(t, path.Join("deploy/kubernetes", r)) {
						t.Errorf("kustomization lists %s, which does not exist", r)
					}
				}
			} else if o.Metadata.Name == "" {
				t.Errorf("%s: a %s without a name", filepath.Base(f), o.Kind)
			}
			objs = append(objs, o)
		}
	}
	return objs
}

func TestKubernetes(t *testing.T) {
	objs := loadManifests(t)
	byKind := map[string][]k8sObject{}
	for _, o := range objs {
		byKind[o.Kind] = append(byKind[o.Kind], o)
	}
	if len(byKind["StatefulSet"]) != 1 || len(byKind["ConfigMap"]) != 1 {
		t.Fatalf("want one StatefulSet and one ConfigMap, have %d and %d", len(byKind["StatefulSet"]), len(byKind["ConfigMap"]))
	}
	sts := byKind["StatefulSet"][0]
	cm := byKind["ConfigMap"][0]
	pod := sts.Spec.Template
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("want one container, have %d", len(pod.Spec.Containers))
	}
	ctr := pod.Spec.Containers[0]
	replPort, metricsPort := ctr.port("replication"), ctr.port("metrics")
	if replPort != relayDefaultPort || metricsPort == 0 {
		t.Errorf("container ports: replication %d, metrics %d", replPort, metricsPort)
	}

	// Probes: readiness is "can serve replicas", liveness "process healthy".
	if p := ctr.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/readyz" || ctr.port(p.HTTPGet.Port) != metricsPort {
		t.Error("readiness probe is not GET /readyz on the metrics port")
	}
	if p := ctr.LivenessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/livez" || ctr.port(p.HTTPGet.Port) != metricsPort {
		t.Error("liveness probe is not GET /livez on the metrics port")
	}
	ann := pod.Metadata.Annotations
	if ann["prometheus.io/scrape"] != "true" || atoiOK(ann["prometheus.io/port"]) != metricsPort {
		t.Errorf("scrape annotations %v do not point at the metrics port %d", ann, metricsPort)
	}

	// The master comes from the ConfigMap, not from args (args would
	// override what CONFIG REWRITE persisted); the relay runs from a config
	// on its data volume that the init container creates, including the
	// ConfigMap's file (TestKubernetesConfigRewrite runs both).
	if _, ok := flag(ctr.Args, "--replicaof"); ok {
		t.Errorf("args %q name the master: a restart would undo a failover CONFIG REWRITE persisted", ctr.Args)
	}
	confPath, ok := flag(ctr.Args, "--config")
	if !ok {
		t.Fatalf("args %q have no --config", ctr.Args)
	}
	mounts := map[string]string{}
	for _, m := range ctr.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	cmFile := ""
	for _, v := range pod.Spec.Volumes {
		if v.ConfigMap != nil && v.ConfigMap.Name == cm.Metadata.Name {
			for key := range cm.Data {
				cmFile = mounts[v.Name] + "/" + key
			}
		}
	}
	if cmFile == "" {
		t.Errorf("ConfigMap %s is not mounted in the relay container", cm.Metadata.Name)
	}
	if claim := nameOfMount(mounts, confPath); !slices.ContainsFunc(sts.Spec.VolumeClaimTemplates, func(vc struct {
		Metadata struct {
			Name string `yaml:"name"`
		} `yaml:"metadata"`
	}) bool {
		return vc.Metadata.Name == claim
	}) {
		t.Errorf("--config %s is not on a volumeClaimTemplate", confPath)
	}
	if inits := pod.Spec.InitContainers; len(inits) != 1 || !strings.Contains(strings.Join(inits[0].Command, " "), confPath) ||
		!strings.Contains(strings.Join(inits[0].Command, " "), "include "+cmFile) {
		t.Errorf("no init container writes %s including %s", confPath, cmFile)
	}
	claims := map[string]bool{}
	for _, vc := range sts.Spec.VolumeClaimTemplates {
		claims[vc.Metadata.Name] = true
	}
	for name := range mounts {
		found := claims[name]
		for _, v := range pod.Spec.Volumes {
			found = found || v.Name == name
		}
		if !found {
			t.Errorf("volume mount %s has no volume or claim", name)
		}
	}
	for _, text := range cm.Data {
		d := confDirectives(t, text)
		checkDirectives(t, "ConfigMap", d)
		if p := d["port"]; p != nil && atoiOK(p[0]) != replPort {
			t.Errorf("ConfigMap port %s, container port %d", p[0], replPort)
		}
		if a := d["metrics-addr"]; a != nil {
			_, p, _ := net.SplitHostPort(a[0])
			if atoiOK(p) != metricsPort {
				t.Errorf("ConfigMap metrics-addr %s, container port %d", a[0], metricsPort)
			}
		}
		if dir := d["dir"]; dir == nil || !claims[nameOfMount(mounts, dir[0])] {
			t.Errorf("ConfigMap dir %q is not on a volumeClaimTemplate", dir)
		}
	}

	// Services select the pods and reach their ports; the StatefulSet's
	// serviceName is the headless one.
	headless := false
	for _, svc := range byKind["Service"] {
		var sel map[string]string
		if err := svc.Spec.Selector.Decode(&sel); err != nil || len(sel) == 0 {
			t.Errorf("service %s has no selector", svc.Metadata.Name)
		}
		for k, v := range sel {
			if pod.Metadata.Labels[k] != v {
				t.Errorf("service %s selects %s=%s, which the pods lack", svc.Metadata.Name, k, v)
			}
		}
		for _, p := range svc.Spec.Ports {
			tp := p.TargetPort
			if tp == nil {
				tp = p.Port
			}
			if ctr.port(tp) == 0 {
				t.Errorf("service %s port %s targets %v, not a container port", svc.Metadata.Name, p.Name, tp)
			}
		}
		if svc.Spec.ClusterIP == "None" && svc.Metadata.Name == sts.Spec.ServiceName {
			headless = true
		}
	}
	if !headless {
		t.Errorf("serviceName %s is not a headless Service", sts.Spec.ServiceName)
	}
}

func nameOfMount(mounts map[string]string, p string) string {
	for name, dir := range mounts {
		if p == dir || strings.HasPrefix(p, dir+"/") {
			return name
		}
	}
	return ""
}

// ---- the relay's own config parser ----

// Every command line and config file in deploy/ and docker-compose.yml goes
// through the relay's own parser (run --check-config prints the settings it
// would run with and exits), so a flag or directive the relay does not know
// fails here rather than at deployment.
func TestRelayAcceptsConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("builds cmd/redis-relay")
	}
	bin := filepath.Join(t.TempDir(), "redis-relay")
	build := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", bin, "./cmd/redis-relay")
	build.Dir = root(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/redis-relay: %v\n%s", err, out)
	}
	check := func(name string, args []string, want map[string]string) {
		t.Run(name, func(t *testing.T) {
			if len(args) == 0 || args[0] != "run" {
				t.Fatalf("args %q do not start with run", args)
			}
			cmd := exec.Command(bin, append(slices.Clip(args), "--check-config")...)
			cmd.Env = []string{"PATH=" + os.Getenv("PATH")} // no REDIS_RELAY_* from the environment
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("redis-relay %s --check-config: %v\n%s", strings.Join(args, " "), err, out)
			}
			got := confDirectives(t, string(out))
			for k, v := range want {
				if strings.Join(got[k], " ") != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
		})
	}

	conf := "deploy/redis-relay.conf.example"
	d := confDirectives(t, string(readFile(t, conf)))
	want := map[string]string{}
	for k, v := range d {
		want[k] = strings.Join(v, " ")
	}
	check("conf example", []string{"run", "--config", filepath.Join(root(t), conf)}, want)

	df := loadDockerfile(t)
	check("Dockerfile CMD", df.cmd, map[string]string{"bind": "0.0.0.0", "dir": "/data", "metrics-addr": "0.0.0.0:8380"})

	c := loadCompose(t)
	for _, name := range relayServices(t, c) {
		args := c.Services[name].args()
		m, _ := flag(args, "--metrics-addr")
		up, _ := flag(args, "--replicaof")
		host, port, _ := net.SplitHostPort(up)
		check("compose "+name, args, map[string]string{"metrics-addr": m, "replicaof": host + " " + port})
	}

	var sts, cm k8sObject
	for _, o := range loadManifests(t) {
		switch o.Kind {
		case "StatefulSet":
			sts = o
		case "ConfigMap":
			cm = o
		}
	}
	for _, ctr := range sts.Spec.Template.Spec.Containers {
		confPath, _ := flag(ctr.Args, "--config")
		text, ok := cm.Data[path.Base(confPath)]
		if !ok {
			t.Fatalf("ConfigMap has no %s", path.Base(confPath))
		}
		local := filepath.Join(t.TempDir(), path.Base(confPath))
		if err := os.WriteFile(local, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		args := slices.Clone(ctr.Args)
		args[slices.Index(args, confPath)] = local
		check("kubernetes "+ctr.Name, args, map[string]string{"replicaof": "redis-master 6379", "dir": "/data", "metrics-addr": "0.0.0.0:8380"})
	}

	cc := loadClusterCompose(t)
	for _, name := range clusterRelays(t, cc) {
		args := cc.Services[name].args()
		seeds, _ := flag(args, "--cluster-seeds")
		slot, _ := flag(args, "--cluster-shard-slot")
		check("cluster compose "+name, args, map[string]string{"cluster-seeds": seeds, "cluster-shard-slot": slot, "replicaof": ""})
	}

	// deploy/kubernetes/cluster: each pod follows another shard.
	followed := map[int]string{}
	for _, pod := range kubernetesClusterPods(t) {
		var slot string
		t.Run("kubernetes cluster "+pod.name, func(t *testing.T) {
			cmd := exec.Command(bin, append(slices.Clip(pod.args), "--check-config")...)
			cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("redis-relay %s --check-config: %v\n%s", strings.Join(pod.args, " "), err, out)
			}
			got := confDirectives(t, string(out))
			if len(got["cluster-seeds"]) == 0 || len(got["cluster-shard-slot"]) != 1 {
				t.Fatalf("cluster-seeds %q, cluster-shard-slot %q", got["cluster-seeds"], got["cluster-shard-slot"])
			}
			slot = got["cluster-shard-slot"][0]
		})
		if slot == "" {
			continue
		}
		if other, ok := followed[clusterShardOf(t, slot)]; ok {
			t.Errorf("%s and %s follow the same shard (slot %s)", pod.name, other, slot)
		}
		followed[clusterShardOf(t, slot)] = pod.name
	}
	if len(followed) != 3 {
		t.Errorf("the Kubernetes cluster example follows %d shards, want 3", len(followed))
	}
}
