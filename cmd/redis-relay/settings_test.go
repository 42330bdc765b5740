package main

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/redis-relay/redis-relay/internal/redistest"
	"github.com/redis-relay/redis-relay/proxy/settings"
)

// sampleValues returns values to try for a setting, from its kind: some
// each setting takes, some it must refuse. pwFile is a file holding a
// password, for the *-file settings.
func sampleValues(d *settings.Setting, pwFile string) []string {
	switch d.Kind {
	case settings.KindInt:
		return []string{"0", "1", "7000", "65535", "70000", "-1", "x", ""}
	case settings.KindSize:
		return []string{"1mb", "0", "-1", "x", "16kb", "64000", "100k", "2gb", ""}
	case settings.KindSeconds:
		return []string{"90", "90s", "0", "-1", "x", "1.5", "2m"}
	case settings.KindDuration:
		return []string{"90", "90s", "2h", "250ms", "0", "-1", "-1s", "x"}
	case settings.KindFloat:
		return []string{"0", "0.5", "1", "2.5", "5", "-1", "x", "NaN"}
	case settings.KindBool:
		return []string{"yes", "no", "YES", "maybe", ""}
	}
	return []string{
		"", "x", "127.0.0.1:7000", "10.0.0.1 6379", "[::1]:6379", "no one", "yes", "no", "optional",
		"fastest", "BEST", "zip", "downstream-min", "downstream-quorum:2", "downstream-quorum:0",
		"debug", "notice", "loud", "json", "xml", "flushall, FLUSHDB", "a b", "-::1,127.0.0.1", pwFile,
	}
}

// companions are lines a setting needs beside it to pass the rules across
// settings.
var companions = map[string]string{
	"sentinel-addrs":       "sentinel-master-name m\n",
	"sentinel-master-name": "sentinel-addrs 127.0.0.1:26379\n",
}

// checkConfigRun is the outcome of `run --check-config`: the printed
// settings, or the error.
type checkConfigRun struct {
	out string
	err error
}

func (r checkConfigRun) String() string {
	if r.err != nil {
		return "error: " + r.err.Error()
	}
	return "accepted"
}

// fileLine is the config file line that sets d to the one-value form v.
func fileLine(d *settings.Setting, v string) string {
	if args, err := d.Args(v); err == nil {
		return formatDirective(d.Name, args)
	}
	return formatDirective(d.Name, []string{v})
}

// expectedConfig is the default configuration with d set to v.
func expectedConfig(d *settings.Setting, v string) (settings.Config, error) {
	c := settings.Default()
	return c, d.Set(&c, v)
}

// TestSettingsRoundTrip walks the settings table. For every setting and a
// few good and bad values of its kind, the config file, the flag and the
// environment variable accept or refuse the same values, and --check-config
// prints what was set in a form that reads back the same. A running relay
// (started from a config file) answers CONFIG SET exactly as the file did,
// or refuses a setting that cannot change at run time; CONFIG GET answers
// the value, and CONFIG REWRITE writes it so that the file reads back the
// same. CONFIG GET * lists every setting.
func TestSettingsRoundTrip(t *testing.T) {
	dir := t.TempDir()
	pwFile := writeTemp(t, "password", "file-secret\n")
	port := redistest.FreePort(t)
	conf := writeTemp(t, "relay.conf", fmt.Sprintf("port %d\ndir %q\nlog-level warn\n", port, dir))
	startApp(t, "--config", conf)
	client := redis.NewClient(&redis.Options{
		Addr: fmt.Sprintf("127.0.0.1:%d", port), Protocol: 2, DisableIdentity: true, PoolSize: 1,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	t.Cleanup(func() { client.Close() })
	ctx := t.Context()
	redistest.Eventually(t, 10*time.Second, func() error { return client.Ping(ctx).Err() })

	start := defaultSettings()
	if err := loadConfigFile(conf, &start); err != nil {
		t.Fatal(err)
	}
	running := start.Config // what the relay runs with, as CONFIG SET changes it

	for _, d := range settings.Table() {
		t.Run(d.Name, func(t *testing.T) {
			accepted := 0
			for _, v := range sampleValues(d, pwFile) {
				base := companions[d.Name]
				file := writeTemp(t, "file.conf", base+fileLine(d, v)+"\n")
				baseFile := writeTemp(t, "base.conf", base)
				var runs [3]checkConfigRun
				runs[0].out, _, runs[0].err = runApp(ctx, "run", "--check-config", "--config", file)
				runs[1].out, _, runs[1].err = runApp(ctx, "run", "--check-config", "--config", baseFile, "--"+d.Name, v)
				t.Setenv(d.EnvVar(), v)
				runs[2].out, _, runs[2].err = runApp(ctx, "run", "--check-config", "--config", baseFile)
				os.Unsetenv(d.EnvVar()) // t.Setenv restores it at the end
				if (runs[0].err == nil) != (runs[1].err == nil) || (runs[0].err == nil) != (runs[2].err == nil) {
					t.Errorf("%q: file %v, flag %v, environment %v", v, runs[0], runs[1], runs[2])
					continue
				}
				fileOK := runs[0].err == nil
				if fileOK {
					accepted++
					if runs[1].out != runs[0].out || runs[2].out != runs[0].out {
						t.Errorf("%q: --check-config prints differently:\nfile:\n%s\nflag:\n%s\nenvironment:\n%s", v, runs[0].out, runs[1].out, runs[2].out)
					}
					want, err := expectedConfig(d, v)
					if err != nil {
						t.Errorf("%q: the file takes it, Setting.Set does not: %v", v, err)
						continue
					}
					printed := defaultSettings()
					if err := parseConfig("check-config output", []byte(runs[0].out), &printed); err != nil {
						t.Errorf("%q: --check-config printed a file that does not parse: %v\n%s", v, err, runs[0].out)
					} else if !d.Secret && !strings.HasSuffix(d.Name, "-file") && d.Value(&printed.Config) != d.Value(&want) {
						t.Errorf("%q: --check-config prints %q, which reads back as %q; want %q", v, d.Format(&want), d.Value(&printed.Config), d.Value(&want))
					}
				}

				err := client.ConfigSet(ctx, d.Name, v).Err()
				if !d.Runtime {
					if err == nil || !strings.Contains(err.Error(), "can't set immutable config") {
						t.Errorf("CONFIG SET %s %q on a setting fixed at start-up: %v, want an immutable-config error", d.Name, v, err)
					}
					continue
				}
				if (err == nil) != fileOK {
					t.Errorf("%q: the file says %v, CONFIG SET says %v", v, runs[0], err)
					continue
				}
				if err != nil {
					continue
				}
				if err := d.Set(&running, v); err != nil {
					t.Fatal(err)
				}
				if got := client.ConfigGet(ctx, d.Name).Val()[d.Name]; got != d.Get(&running) {
					t.Errorf("after CONFIG SET %s %q, CONFIG GET answers %q, want %q", d.Name, v, got, d.Get(&running))
				}
				if err := client.ConfigRewrite(ctx).Err(); err != nil {
					t.Errorf("CONFIG REWRITE after CONFIG SET %s %q: %v", d.Name, v, err)
					continue
				}
				text := readFile(t, conf)
				again := defaultSettings()
				if err := parseConfig(conf, []byte(text), &again); err != nil {
					t.Errorf("after CONFIG SET %s %q the rewritten file does not load: %v\n%s", d.Name, v, err, text)
					continue
				}
				switch {
				case d.Secret && v != "":
					if strings.Contains(text, "\n"+d.Name+" ") {
						t.Errorf("CONFIG REWRITE wrote %s, set at run time, into the file:\n%s", d.Name, text)
					}
				case d.Value(&again.Config) != d.Value(&running):
					t.Errorf("after CONFIG SET %s %q the rewritten file holds %q, want %q:\n%s", d.Name, v, d.Value(&again.Config), d.Value(&running), text)
				}
			}
			if accepted == 0 {
				t.Errorf("no sample value was accepted: the test does not round-trip %s", d.Name)
			}
			if d.Runtime { // back to where it started, for the settings after it
				def := d.Value(&start.Config)
				if err := client.ConfigSet(ctx, d.Name, def).Err(); err != nil {
					t.Fatalf("CONFIG SET %s %q (its value at start-up): %v", d.Name, def, err)
				}
				if err := d.Set(&running, def); err != nil {
					t.Fatal(err)
				}
			}
		})
	}

	all, err := client.ConfigGet(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range settings.Table() {
		for _, name := range append([]string{d.Name}, d.Aliases...) {
			got, ok := all[name]
			if d.Ignored != "" {
				// Accepted from Redis configs, not in effect: not shown.
				if ok {
					t.Errorf("CONFIG GET * shows %s %q, a setting the relay ignores", name, got)
				}
				continue
			}
			if !ok {
				t.Errorf("CONFIG GET * lacks %s", name)
				continue
			}
			if want := d.Get(&running); got != want {
				t.Errorf("CONFIG GET * answers %s %q, want %q", name, got, want)
			}
		}
	}
}

// TestConfigGetHidesSecrets: CONFIG GET answers whether a password is set,
// never the password.
func TestConfigGetHidesSecrets(t *testing.T) {
	relay := startRelay(t, settings.Config{RequirePass: "hunter2", MasterAuth: "hunter3"})
	client := relayClient(t, relay.addr, "hunter2")
	all, err := client.ConfigGet(t.Context(), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range all {
		if strings.Contains(v, "hunter") {
			t.Errorf("CONFIG GET * shows %s = %q", name, v)
		}
	}
	if all["requirepass"] == "" || all["masterauth"] == "" {
		t.Errorf("CONFIG GET does not say the passwords are set: requirepass %q, masterauth %q", all["requirepass"], all["masterauth"])
	}
	if v, ok := all["sentinel-password"]; !ok || v != "" {
		t.Errorf("sentinel-password, not set, answers %q (listed: %v)", v, ok)
	}
}

// TestReadmeListsEverySetting keeps the README's table of directives in
// step with the settings table.
func TestReadmeListsEverySetting(t *testing.T) {
	readme := readFile(t, "../../README.md")
	for _, d := range settings.Table() {
		if !strings.Contains(readme, "`"+d.Name) {
			t.Errorf("README.md does not describe %s", d.Name)
		}
	}
}
