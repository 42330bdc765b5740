package main

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/redis-relay/redis-relay/recovery"
)

func recoverCommand() *cli.Command {
	return &cli.Command{
		Name:  "recover",
		Usage: "rebuild the dataset as of a past moment from a relay's data dir",
		UsageText: "redis-relay recover --dir DIR (--until TIME|OFFSET | --before-command NAME [--after TIME]) (--out FILE | --serve PORT)\n\n" +
			"   redis-relay recover --dir /var/lib/redis-relay --before-command FLUSHALL --out before-flush.rdb\n" +
			"   redis-relay recover --dir /var/lib/redis-relay --until 2026-11-29T14:05:00Z --serve 7000",
		Description: "A scratch redis-server is fed the relay's snapshot and the stream after it up to the\n" +
			"point, as a replica would be. While it is still that replica (no key expires) its digest\n" +
			"and key count are printed and the dataset is written as an RDB file (--out); or it is\n" +
			"promoted and left running (--serve, on a free port, loopback unless --bind says\n" +
			"otherwise). The point falls on a whole command and never inside MULTI/EXEC. The data\n" +
			"dir is only read: it may belong to a running relay or be a copy taken off a broken\n" +
			"host. Times are RFC 3339.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "dir", Usage: "the relay's data dir", Required: true},
			&cli.StringFlag{Name: "until", Usage: "the dataset as it was at this time, or as of this replication offset"},
			&cli.StringFlag{Name: "before-command", Usage: "the dataset just before the first command of this name (FLUSHALL, FLUSHDB, ...); DEL (UNLINK with lazyfree-lazy-expire/-eviction yes) also matches every key the master expired or evicted"},
			&cli.StringFlag{Name: "after", Usage: "with --before-command: the first such command at or after this time"},
			&cli.StringFlag{Name: "out", Usage: "write the dataset to this RDB file"},
			&cli.IntFlag{Name: "serve", Usage: "leave a redis-server with the dataset on this port (it must be free)"},
			&cli.StringFlag{Name: "bind", Value: "127.0.0.1", Usage: "with --serve: the addresses that redis-server listens on (no password: protected mode refuses other hosts until one is set)"},
			&cli.StringFlag{Name: "redis-server", Usage: "the redis-server binary to use (default: from PATH)"},
		},
		Action: func(c *cli.Context) error {
			o, err := recoverOptions(c)
			if err != nil {
				return err
			}
			res, err := recovery.Recover(c.Context, o)
			if err != nil {
				return err
			}
			w := c.App.Writer
			fmt.Fprintf(w, "replid %s, offset %d", res.ReplID, res.Offset)
			if !res.Time.IsZero() {
				fmt.Fprintf(w, " (last command applied arrived at %s)", res.Time.UTC().Format(time.RFC3339Nano))
			}
			fmt.Fprintln(w)
			if res.Command != "" {
				fmt.Fprintf(w, "left out: %s at offset %d and everything after it\n", res.Command, res.CmdAt)
			}
			fmt.Fprintf(w, "keys %d, DEBUG DIGEST %s, took %s\n", res.Keys, res.Digest, res.Elapsed.Round(time.Millisecond))
			if o.Out != "" {
				fmt.Fprintf(w, "written to %s\n", o.Out)
			}
			if o.ServePort > 0 {
				fmt.Fprintf(w, "serving on %s port %d (redis-server pid %d; stop it with SHUTDOWN NOSAVE)\n", o.Bind, o.ServePort, res.Pid)
			}
			return nil
		},
	}
}

func recoverOptions(c *cli.Context) (recovery.Options, error) {
	o := recovery.Options{
		DataDir: c.String("dir"), UntilOffset: -1, BeforeCommand: c.String("before-command"),
		Out: c.String("out"), ServePort: c.Int("serve"), Bind: c.String("bind"), RedisServer: c.String("redis-server"),
		Logger: slog.New(slog.NewTextHandler(c.App.ErrWriter, nil)),
	}
	until := c.String("until")
	switch {
	case (until == "") == (o.BeforeCommand == ""):
		return o, errors.New("give exactly one of --until and --before-command")
	case (o.Out == "") == (o.ServePort == 0):
		return o, errors.New("give exactly one of --out and --serve")
	case o.ServePort < 0 || o.ServePort > 65535:
		return o, fmt.Errorf("--serve %d is not a port", o.ServePort)
	case c.IsSet("bind") && o.ServePort == 0:
		return o, errors.New("--bind goes with --serve")
	}
	if until != "" {
		if off, err := strconv.ParseInt(until, 10, 64); err == nil {
			o.UntilOffset = off
		} else if o.Until, err = time.Parse(time.RFC3339Nano, until); err != nil {
			return o, fmt.Errorf("--until %q is neither an offset nor an RFC 3339 time", until)
		}
	}
	if after := c.String("after"); after != "" {
		var err error
		if o.BeforeCommand == "" {
			return o, errors.New("--after goes with --before-command")
		}
		if o.After, err = time.Parse(time.RFC3339Nano, after); err != nil {
			return o, fmt.Errorf("--after %q is not an RFC 3339 time", after)
		}
	}
	return o, nil
}
