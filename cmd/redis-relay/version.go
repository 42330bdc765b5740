package main

import (
	"fmt"
	"io"
	"runtime/debug"

	"github.com/urfave/cli/v2"

	"github.com/redis-relay/redis-relay/proxy"
)

// buildTime is when the binary was built, stamped by make build and make
// image (-ldflags "-X main.buildTime=..."); the Go toolchain records the
// commit, not the build.
var buildTime string

// build describes the running binary, from what the Go toolchain stamped
// into it (debug.ReadBuildInfo) and the link-time stamps.
type build struct {
	version   string // proxy.Version, plus the short revision when known
	revision  string // vcs.revision: the commit built from
	committed string // vcs.time
	modified  bool   // vcs.modified: built with uncommitted changes
	built     string // buildTime
	goVersion string
}

func readBuild(base string, bi *debug.BuildInfo, built string) build {
	b := build{version: base, built: built}
	if bi == nil {
		return b
	}
	b.goVersion = bi.GoVersion
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			b.revision = s.Value
		case "vcs.time":
			b.committed = s.Value
		case "vcs.modified":
			b.modified = s.Value == "true"
		}
	}
	if b.revision != "" {
		short := b.revision
		if len(short) > 12 {
			short = short[:12]
		}
		b.version += "+" + short
		if b.modified {
			b.version += ".dirty"
		}
	}
	return b
}

// The relay's own version (redis-relay version, INFO's relay_version and
// redis_relay_info) carries the revision it was built from.
func init() {
	bi, _ := debug.ReadBuildInfo()
	proxy.Version = readBuild(proxy.Version, bi, buildTime).version
}

func (b build) write(w io.Writer) {
	fmt.Fprintln(w, "redis-relay", b.version)
	unknown := func(v, why string) string {
		if v == "" {
			return "unknown (" + why + ")"
		}
		return v
	}
	rev := unknown(b.revision, "not built from a git checkout")
	if b.modified {
		rev += " (with uncommitted changes)"
	}
	fmt.Fprintln(w, "revision: ", rev)
	fmt.Fprintln(w, "committed:", unknown(b.committed, "not built from a git checkout"))
	fmt.Fprintln(w, "built:    ", unknown(b.built, "not stamped; make build and make image stamp it"))
	fmt.Fprintln(w, "go:       ", unknown(b.goVersion, "no build info"))
}

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print the version, the revision and build time",
		Action: func(c *cli.Context) error {
			bi, _ := debug.ReadBuildInfo()
			b := readBuild("", bi, buildTime)
			b.version = proxy.Version // already carries the revision (init)
			b.write(c.App.Writer)
			return nil
		},
	}
}
