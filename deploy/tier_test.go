package deploy_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestKubernetesTier: the StatefulSet's init container gives every pod but
// the first a snapshot-source on the first pod, so the tier costs the
// master one fork; the first pod follows the master alone.
func TestKubernetesTier(t *testing.T) {
	var sts k8sObject
	for _, o := range loadManifests(t) {
		if o.Kind == "StatefulSet" {
			sts = o
		}
	}
	for _, tc := range []struct {
		hostname, want string
	}{
		{"redis-relay-0", ""},
		{"redis-relay-1", "snapshot-source redis-relay-0.redis-relay-headless:6380"},
		{"redis-relay-2", "snapshot-source redis-relay-0.redis-relay-headless:6380"},
		{"laptop", ""},
	} {
		t.Run(tc.hostname, func(t *testing.T) {
			data, etc := t.TempDir(), t.TempDir()
			script := k8sInit(t, sts, map[string]string{"/data": data, "/etc/redis-relay": etc})
			cmd := exec.Command("sh", "-c", script)
			cmd.Env = append(os.Environ(), "HOSTNAME="+tc.hostname)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("init script: %v\n%s", err, out)
			}
			text, err := os.ReadFile(filepath.Join(data, "redis-relay.conf"))
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			for _, line := range strings.Split(string(text), "\n") {
				if strings.HasPrefix(line, "snapshot-source") {
					got = line
				}
			}
			if got != tc.want {
				t.Errorf("snapshot-source line %q, want %q:\n%s", got, tc.want, text)
			}
		})
	}
}
