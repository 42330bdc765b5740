package main

import (
	"os"
	"os/exec"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/redis-relay/redis-relay/proxy"
)

func TestReadBuild(t *testing.T) {
	bi := &debug.BuildInfo{GoVersion: "go1.26.8", Settings: []debug.BuildSetting{
		{Key: "vcs", Value: "git"},
		{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
		{Key: "vcs.time", Value: "2026-01-02T03:04:05Z"},
		{Key: "vcs.modified", Value: "true"},
	}}
	b := readBuild("1.2.0", bi, "2026-01-03T00:00:00Z")
	if b.version != "1.2.0+0123456789ab.dirty" {
		t.Errorf("version %q, want 1.2.0+0123456789ab.dirty", b.version)
	}
	var out strings.Builder
	b.write(&out)
	for _, want := range []string{
		"redis-relay 1.2.0+0123456789ab.dirty\n",
		"revision:  0123456789abcdef0123456789abcdef01234567 (with uncommitted changes)\n",
		"committed: 2026-01-02T03:04:05Z\n",
		"built:     2026-01-03T00:00:00Z\n",
		"go:        go1.26.8\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("version output lacks %q:\n%s", want, out.String())
		}
	}
	if b := readBuild("1.2.0", &debug.BuildInfo{GoVersion: "go1.26.8"}, ""); b.version != "1.2.0" {
		t.Errorf("without VCS stamps: version %q, want 1.2.0", b.version)
	}
}

func TestVersionCommand(t *testing.T) {
	out, _, err := runApp(t.Context(), "version")
	if err != nil {
		t.Fatal(err)
	}
	if first, _, _ := strings.Cut(out, "\n"); first != "redis-relay "+proxy.Version {
		t.Errorf("first line %q, want redis-relay %s", first, proxy.Version)
	}
	if !strings.Contains(out, "revision:") || !strings.Contains(out, "built:") {
		t.Errorf("version output:\n%s", out)
	}
}

func TestCompletion(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish"} {
		out, _, err := runApp(t.Context(), "completion", shell)
		if err != nil || !strings.Contains(out, "redis-relay") {
			t.Fatalf("completion %s: %v\n%s", shell, err, out)
		}
		if shell == "bash" {
			if bash, err := exec.LookPath("bash"); err == nil {
				if msg, err := exec.Command(bash, "-n", "-c", out).CombinedOutput(); err != nil {
					t.Errorf("bash -n: %v\n%s", err, msg)
				}
			}
		}
	}
	if _, _, err := runApp(t.Context(), "completion", "tcsh"); err == nil {
		t.Error("completion tcsh: no error")
	}
	// What the scripts ask for on TAB: commands, then a command's flags.
	// urfave/cli reads the word before the cursor from os.Args.
	complete := func(args ...string) string {
		saved := os.Args
		os.Args = append([]string{"redis-relay"}, args...)
		defer func() { os.Args = saved }()
		out, _, err := runApp(t.Context(), args...)
		if err != nil {
			t.Fatalf("%q: %v", args, err)
		}
		return out
	}
	out := complete("--generate-bash-completion")
	for _, cmd := range []string{"run", "status", "version", "completion"} {
		if !strings.Contains(out, cmd+"\n") {
			t.Errorf("command completion lacks %s:\n%s", cmd, out)
		}
	}
	out = complete("status", "-", "--generate-bash-completion")
	if !strings.Contains(out, "--watch") {
		t.Errorf("status flag completion lacks --watch:\n%s", out)
	}
}
