package deploy_test

// Tests that run the deployment files with real tools: the relay binary
// from the systemd unit's and the StatefulSet's command lines, with CONFIG
// REWRITE persisting where each deployment keeps its config; promtool on
// the alert rules and their unit tests; a real Prometheus scraping a real
// relay. promtool and prometheus come from Debian's prometheus package
// (make tools, .ci/run); a missing one fails the test.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"gopkg.in/yaml.v3"

	"github.com/redis-relay/redis-relay/internal/redistest"
)

// tool finds an executable the tests need, failing with how to install it.
func tool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found: install Debian's prometheus package (make tools, or apt-get install -y prometheus)", name)
	}
	return p
}

// buildRelay builds cmd/redis-relay into a temp dir.
func buildRelay(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "redis-relay")
	build := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", bin, "./cmd/redis-relay")
	build.Dir = root(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/redis-relay: %v\n%s", err, out)
	}
	return bin
}

// runRelay starts the relay binary with args and env (nothing else from
// our environment), waits until it answers PING on port, and stops it with
// SIGTERM when the test ends.
func runRelay(t *testing.T, bin string, port int, env []string, args ...string) *redis.Client {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	logPath := filepath.Join(t.TempDir(), "relay.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait(); logf.Close() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			log, _ := os.ReadFile(logPath)
			t.Logf("relay log:\n%s", log)
		}
	})
	c := redis.NewClient(&redis.Options{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Protocol: 2, DisableIdentity: true})
	t.Cleanup(func() { c.Close() })
	redistest.Eventually(t, 15*time.Second, func() error {
		select {
		case err := <-done:
			t.Fatalf("relay exited: %v", err)
		default:
		}
		return c.Ping(t.Context()).Err()
	})
	return c
}

// failover points the relay at a new master and persists it, as Sentinel
// does after a failover.
func failover(t *testing.T, c *redis.Client, master *redistest.Server) {
	t.Helper()
	host, port := master.HostPort()
	for _, cmd := range [][]any{{"REPLICAOF", host, port}, {"CONFIG", "REWRITE"}} {
		if err := c.Do(t.Context(), cmd...).Err(); err != nil {
			t.Fatalf("%v: %v", cmd, err)
		}
	}
}

func checkConfig(t *testing.T, bin string, args ...string) map[string][]string {
	t.Helper()
	cmd := exec.Command(bin, append(slices.Clip(args), "--check-config")...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s --check-config: %v\n%s", strings.Join(args, " "), err, out)
	}
	return confDirectives(t, string(out))
}

// TestSystemdConfigRewrite: the unit lets the relay write its config
// directory, the install steps make it writable to the relay's group, and
// CONFIG REWRITE from the unit's command line persists a new master in the
// example config, with no password from the environment.
func TestSystemdConfigRewrite(t *testing.T) {
	unit := string(readFile(t, "deploy/systemd/redis-relay.service"))
	var execStart []string
	var rw []string
	for line := range strings.Lines(unit) {
		line = strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(line, "ExecStart="); ok {
			execStart = strings.Fields(v)
		}
		if v, ok := strings.CutPrefix(line, "ReadWritePaths="); ok {
			rw = append(rw, strings.Fields(v)...)
		}
	}
	confPath, _ := flag(execStart, "--config")
	confDir := filepath.Dir(confPath)
	if !slices.Contains(rw, confDir) {
		t.Errorf("ReadWritePaths=%v lacks %s: under ProtectSystem=strict CONFIG REWRITE cannot replace %s", rw, confDir, confPath)
	}
	// install -d -m 0770 -g redis-relay /etc/redis-relay: the relay's group
	// may create the new file and rename it over the old one.
	m := regexp.MustCompile(`install -d -m (\d+) -g (\S+) ` + regexp.QuoteMeta(confDir) + `\b`).FindStringSubmatch(unit)
	if m == nil {
		t.Fatalf("the unit's install steps do not create %s with a group", confDir)
	}
	if mode, _ := strconv.ParseUint(m[1], 8, 32); mode&0o030 != 0o030 || m[2] != "redis-relay" {
		t.Errorf("%s is created with mode %s group %s: the relay's group needs write and search", confDir, m[1], m[2])
	}
	if !strings.Contains(unit, "User=redis-relay") {
		t.Error("the unit does not run as redis-relay, the group that owns the config directory")
	}

	bin := buildRelay(t)
	master1, master2 := redistest.Start(t, "--requirepass", "pw"), redistest.Start(t, "--requirepass", "pw")
	etc := t.TempDir()
	conf := filepath.Join(etc, filepath.Base(confPath))
	example := strings.Replace(string(readFile(t, "deploy/redis-relay.conf.example")), "replicaof 10.0.0.5 6379", "replicaof "+strings.Replace(master1.Addr(), ":", " ", 1), 1)
	if err := os.WriteFile(conf, []byte(example), 0o660); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(conf, 0o660); err != nil { // as install -m 0660, whatever our umask
		t.Fatal(err)
	}
	port := redistest.FreePort(t)
	args := slices.Clone(execStart[1:])
	args[slices.Index(args, confPath)] = conf
	args = append(args, "--dir", t.TempDir(), "--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--metrics-addr", "")
	c := runRelay(t, bin, port, []string{"REDIS_RELAY_MASTERAUTH=pw"}, args...)
	failover(t, c, master2)

	text, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	want := "replicaof " + strings.Replace(master2.Addr(), ":", " ", 1) + "\n"
	if !strings.Contains(string(text), want) || strings.Contains(string(text), "pw") {
		t.Errorf("after CONFIG REWRITE the config file should name %q and hold no password:\n%s", want, text)
	}
	if fi, err := os.Stat(conf); err != nil || fi.Mode().Perm() != 0o660 {
		t.Errorf("rewritten file mode %v (%v), want 0660 as installed", fi.Mode().Perm(), err)
	}
	if got := checkConfig(t, bin, "run", "--config", conf)["replicaof"]; strings.Join(got, ":") != master2.Addr() {
		t.Errorf("a restarted relay would follow %v, want %s", got, master2.Addr())
	}
}

// k8sInit returns the init container's shell command with the pod's paths
// mapped onto local directories.
func k8sInit(t *testing.T, sts k8sObject, paths map[string]string) string {
	t.Helper()
	inits := sts.Spec.Template.Spec.InitContainers
	if len(inits) != 1 {
		t.Fatalf("want one init container, have %d", len(inits))
	}
	cmd := inits[0].Command
	if len(cmd) != 3 || cmd[0] != "sh" || cmd[1] != "-c" {
		t.Fatalf("init container command %q is not sh -c <script>", cmd)
	}
	script := cmd[2]
	for pod, local := range paths {
		script = strings.ReplaceAll(script, pod, local)
	}
	return script
}

// TestKubernetesConfigRewrite runs the StatefulSet's init container script
// and the relay's command line on local directories standing for the
// ConfigMap mount (read-only) and the data volume: CONFIG REWRITE persists
// a new master on the volume, the init script keeps it across restarts,
// and settings CONFIG REWRITE did not change still follow the ConfigMap.
func TestKubernetesConfigRewrite(t *testing.T) {
	var sts, cm k8sObject
	for _, o := range loadManifests(t) {
		switch o.Kind {
		case "StatefulSet":
			sts = o
		case "ConfigMap":
			cm = o
		}
	}
	ctr := sts.Spec.Template.Spec.Containers[0]
	mounts := map[string]string{}
	for _, m := range ctr.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	dataPod, etcPod := mounts["data"], mounts["config"]
	confPod, _ := flag(ctr.Args, "--config")
	if !strings.HasPrefix(confPod, dataPod+"/") {
		t.Fatalf("--config %s is not on the data volume %s: CONFIG REWRITE could not persist", confPod, dataPod)
	}
	cmKey := ""
	for k := range cm.Data {
		cmKey = k
	}

	bin := buildRelay(t)
	master1, master2 := redistest.Start(t), redistest.Start(t)
	data, etc := t.TempDir(), t.TempDir()
	writeCM := func(text string) {
		os.Chmod(etc, 0o755)
		if err := os.WriteFile(filepath.Join(etc, cmKey), []byte(text), 0o444); err != nil {
			t.Fatal(err)
		}
		os.Chmod(etc, 0o555) // a ConfigMap mount is read-only
	}
	t.Cleanup(func() { os.Chmod(etc, 0o755) })
	cmText := strings.Replace(cm.Data[cmKey], "replicaof redis-master 6379", "replicaof "+strings.Replace(master1.Addr(), ":", " ", 1), 1)
	writeCM(cmText)
	script := k8sInit(t, sts, map[string]string{dataPod: data, etcPod: etc})
	runInit := func() {
		if out, err := exec.Command("sh", "-c", script).CombinedOutput(); err != nil {
			t.Fatalf("init container script: %v\n%s", err, out)
		}
	}
	runInit()
	conf := filepath.Join(data, strings.TrimPrefix(confPod, dataPod+"/"))

	port := redistest.FreePort(t)
	args := slices.Clone(ctr.Args)
	args[slices.Index(args, confPod)] = conf
	args = append(args, "--dir", filepath.Join(data, "relay"), "--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--metrics-addr", "")
	c := runRelay(t, bin, port, []string{"REDIS_RELAY_REQUIREPASS="}, args...)
	failover(t, c, master2)

	runInit() // the pod restarts: the copy on the volume is kept
	text, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(text), "include "+filepath.Join(etc, cmKey)+"\n") {
		t.Errorf("the config on the volume does not start with the include of the ConfigMap:\n%s", text)
	}
	if strings.Contains(string(text), "refresh-max-age") {
		t.Errorf("CONFIG REWRITE copied a ConfigMap setting it did not change:\n%s", text)
	}
	writeCM(strings.Replace(cmText, "repl-timeout 60", "repl-timeout 45", 1)) // kubectl apply of a new ConfigMap
	got := checkConfig(t, bin, "run", "--config", conf)
	if strings.Join(got["replicaof"], ":") != master2.Addr() {
		t.Errorf("after a restart the relay would follow %v, want %s", got["replicaof"], master2.Addr())
	}
	if strings.Join(got["repl-timeout"], " ") != "45" {
		t.Errorf("repl-timeout %v: the ConfigMap's new value should still apply", got["repl-timeout"])
	}
}

func TestPromtoolCheckRules(t *testing.T) {
	promtool := tool(t, "promtool")
	out, err := exec.Command(promtool, "check", "rules", filepath.Join(root(t), "deploy/prometheus/alerts.yml")).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
}

// TestAlertRuleUnitTests runs deploy/prometheus/alerts_test.yml and checks
// that it tests every alert both ways: firing, and quiet (an eval_time
// with no alert expected).
func TestAlertRuleUnitTests(t *testing.T) {
	promtool := tool(t, "promtool")
	cmd := exec.Command(promtool, "test", "rules", "alerts_test.yml")
	cmd.Dir = filepath.Join(root(t), "deploy/prometheus")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}

	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	parseYAML(t, "deploy/prometheus/alerts.yml", &rules)
	var tests struct {
		Tests []struct {
			AlertRuleTest []struct {
				AlertName string `yaml:"alertname"`
				ExpAlerts []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	parseYAML(t, "deploy/prometheus/alerts_test.yml", &tests)
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.AlertName] = true
			} else {
				quiet[a.AlertName] = true
			}
		}
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if !fires[r.Alert] || !quiet[r.Alert] {
				t.Errorf("alert %s: a unit test that fires it: %v, one where it stays quiet: %v", r.Alert, fires[r.Alert], quiet[r.Alert])
			}
		}
	}
}

// TestPrometheusScrapesRelay starts a real Prometheus with the repository's
// scrape job and alert rules, pointed at a real relay, and asks it for a
// relay metric.
func TestPrometheusScrapesRelay(t *testing.T) {
	prom := tool(t, "prometheus")
	bin := buildRelay(t)
	master := redistest.Start(t)
	port, metricsPort, promPort := redistest.FreePort(t), redistest.FreePort(t), redistest.FreePort(t)
	runRelay(t, bin, port, nil, "run", "--replicaof", master.Addr(), "--bind", "127.0.0.1", "--port", strconv.Itoa(port),
		"--dir", t.TempDir(), "--metrics-addr", net.JoinHostPort("127.0.0.1", strconv.Itoa(metricsPort)))

	// The compose scrape config, with the relay's address and a short
	// interval; its job name is what RedisRelayDown matches.
	var cfg map[string]any
	parseYAML(t, "deploy/prometheus/prometheus.yml", &cfg)
	cfg["global"] = map[string]any{"scrape_interval": "1s", "evaluation_interval": "1s"}
	cfg["rule_files"] = []string{filepath.Join(root(t), "deploy/prometheus/alerts.yml")}
	job := cfg["scrape_configs"].([]any)[0].(map[string]any)
	job["static_configs"] = []any{map[string]any{"targets": []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(metricsPort))}}}
	dir := t.TempDir()
	raw, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	confPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(confPath, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(prom, "--config.file="+confPath, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+net.JoinHostPort("127.0.0.1", strconv.Itoa(promPort)))
	logPath := filepath.Join(dir, "prometheus.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		logf.Close()
		if t.Failed() {
			log, _ := os.ReadFile(logPath)
			t.Logf("prometheus log:\n%s", tailLines(string(log), 30))
		}
	})

	api := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(promPort)) + "/api/v1/"
	query := func(q string) ([]promSample, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", api+"query?query="+url.QueryEscape(q), nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var r struct {
			Status string `json:"status"`
			Data   struct {
				Result []promSample `json:"result"`
			} `json:"data"`
		}
		if err := json.Unmarshal(body, &r); err != nil || r.Status != "success" {
			return nil, fmt.Errorf("query %s: %s (%v)", q, body, err)
		}
		return r.Data.Result, nil
	}
	redistest.Eventually(t, 60*time.Second, func() error {
		res, err := query(`redis_relay_ready{job="redis-relay"}`)
		if err != nil {
			return err
		}
		if len(res) != 1 || res[0].Value[1] != "1" {
			return fmt.Errorf("redis_relay_ready = %v, want one series at 1 once the relay has synced", res)
		}
		return nil
	})
	res, err := query(`up{job="redis-relay"}`)
	if err != nil || len(res) != 1 || res[0].Value[1] != "1" {
		t.Errorf("up = %v (%v), want 1", res, err)
	}
	// Prometheus loaded every alert rule from the repository.
	resp, err := http.Get(api + "rules")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	rules, err := os.ReadFile(filepath.Join("prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Count(string(rules), "- alert:")
	if n := strings.Count(string(body), `"type":"alerting"`); n != want || want == 0 {
		t.Errorf("Prometheus loaded %d alerting rules, alerts.yml has %d:\n%s", n, want, body)
	}
}

type promSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestMakeImage: make image builds deploy/Dockerfile from the repository
// root (Docker itself is not run here), and the README says how to push it
// and point the kustomization at it.
func TestMakeImage(t *testing.T) {
	// --no-print-directory: under make test, the recursive make would
	// print "Entering directory" lines around the command.
	mk := exec.Command("make", "--no-print-directory", "-n", "image", "IMAGE=registry.example/relay", "TAG=v9")
	mk.Dir = root(t)
	out, err := mk.CombinedOutput()
	if err != nil {
		t.Fatalf("make -n image: %v\n%s", err, out)
	}
	cmd := strings.Fields(string(out))
	if len(cmd) < 2 || cmd[0] != "docker" || cmd[1] != "build" {
		t.Fatalf("make image runs %q, want docker build", out)
	}
	if f, _ := flag(cmd, "-f"); f != "deploy/Dockerfile" {
		t.Errorf("make image builds %q, want -f deploy/Dockerfile", f)
	}
	if tag, _ := flag(cmd, "-t"); tag != "registry.example/relay:v9" {
		t.Errorf("make image tags %q", tag)
	}
	if cmd[len(cmd)-1] != "." {
		t.Errorf("make image's context is %q, want the repository root", cmd[len(cmd)-1])
	}
	if !slices.Contains(cmd, "VERSION=v9") {
		t.Errorf("make image does not stamp the version: %q", out)
	}
	readme := string(readFile(t, "README.md"))
	for _, want := range []string{"make image", "docker push", "images:", "newName:"} {
		if !strings.Contains(readme, want) {
			t.Errorf("README lacks %q (how to push the image and point the kustomization at it)", want)
		}
	}
}
