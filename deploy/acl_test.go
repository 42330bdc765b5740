package deploy_test

import (
	"errors"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/redis-relay/redis-relay/proxy/acl"
)

// request splits a command as a client sends it.
func request(s string) [][]byte {
	var out [][]byte
	for _, f := range strings.Fields(s) {
		out = append(out, []byte(f))
	}
	return out
}

// TestShippedUsers: the shipped ACL users (deploy/acl/users.acl, and the
// same lines in the Kubernetes Secret example) load, and each may send
// what its client sends and nothing that changes the relay: a replica its
// handshake, Sentinel its monitoring and failover commands (as Redis
// 7.0's sentinel.c sends them), redis_exporter its scrape (the commands of
// its exporter package that the relay answers).
func TestShippedUsers(t *testing.T) {
	file := readFile(t, "deploy/acl/users.acl")
	users, err := acl.ParseFile("users.acl", file)
	if err != nil {
		t.Fatal(err)
	}
	a := acl.New()
	a.Replace(users)

	var secret struct {
		StringData map[string]string `yaml:"stringData"`
	}
	if err := yaml.Unmarshal(readFile(t, "deploy/kubernetes/acl-secret.example.yaml"), &secret); err != nil {
		t.Fatal(err)
	}
	fromSecret, err := acl.ParseFile("secret users.acl", []byte(secret.StringData["users.acl"]))
	if err != nil {
		t.Fatal(err)
	}
	b := acl.New()
	b.Replace(fromSecret)
	if got, want := strings.Join(b.List(), "\n"), strings.Join(a.List(), "\n"); got != want {
		t.Errorf("the Secret's users differ from deploy/acl/users.acl:\n%s\nwant\n%s", got, want)
	}
	for user, pass := range map[string]string{"replica-user": "replica", "sentinel-user": "sentinel", "operator": "operator", "metrics": "metrics"} {
		if !a.Authenticate(user, "change-me-"+pass, nil) || secret.StringData[pass+"-password"] != "change-me-"+pass {
			t.Errorf("%s: the placeholder password does not match its hash or the Secret", user)
		}
	}
	if a.StartsAuthenticated() {
		t.Error("the default user needs no password")
	}

	changes := []string{"CONFIG SET snapshot-source 10.0.0.9:6379", "REPLICAOF 10.0.0.9 6379", "SLAVEOF NO ONE", "CLIENT KILL TYPE replica",
		"SHUTDOWN", "RELAY GUARD RELEASE", "ACL SETUSER x on", "ACL LOAD", "CONFIG REWRITE", "LATENCY RESET", "PUBLISH __sentinel__:hello x", "SUBSCRIBE news"}
	for _, tt := range []struct {
		user  string
		sends []string
		may   []string // of changes
	}{
		{"replica-user", []string{"PING", "AUTH replica-user x", "REPLCONF listening-port 6379", "REPLCONF capa eof capa psync2", "PSYNC ? -1", "REPLCONF ACK 100"}, nil},
		{"sentinel-user", []string{"AUTH sentinel-user x", "CLIENT SETNAME sentinel-1-cmd", "PING", "INFO", "ROLE", "SUBSCRIBE __sentinel__:hello",
			"PUBLISH __sentinel__:hello 127.0.0.1,26379", "MULTI", "SLAVEOF 10.0.0.9 6379", "CONFIG REWRITE", "CLIENT KILL TYPE normal", "CLIENT KILL TYPE pubsub", "EXEC"},
			[]string{"REPLICAOF 10.0.0.9 6379", "SLAVEOF NO ONE", "CLIENT KILL TYPE replica", "CONFIG REWRITE", "PUBLISH __sentinel__:hello x"}},
		{"metrics", []string{"PING", "CLIENT SETNAME redis_exporter", "INFO ALL", "INFO", "CONFIG GET *", "LATENCY LATEST", "LATENCY HISTOGRAM", "SLOWLOG GET 10", "SLOWLOG LEN", "COMMAND INFO COMMANDLOG", "CLIENT LIST"}, nil},
		{"operator", changes, changes},
	} {
		for _, cmd := range tt.sends {
			if err := a.Check(tt.user, request(cmd), nil); err != nil {
				t.Errorf("%s: %s: %v", tt.user, cmd, err)
			}
		}
		for _, cmd := range changes {
			err := a.Check(tt.user, request(cmd), nil)
			var denied *acl.Denied
			if may := strings.Contains(strings.Join(tt.may, "\n"), cmd); may != (err == nil) || (err != nil && !errors.As(err, &denied)) {
				t.Errorf("%s: %s: %v (allowed: %v)", tt.user, cmd, err, may)
			}
		}
	}
}
