package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/redis-relay/redis-relay/proxy"
)

func runCommand() *cli.Command {
	return &cli.Command{
		Name:  "run",
		Usage: "run the relay in front of a master",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "replicaof", Usage: "upstream master as host:port", EnvVars: []string{"REDIS_RELAY_REPLICAOF"}},
			&cli.StringFlag{Name: "bind", Value: "127.0.0.1", Usage: "address to listen on for replicas", EnvVars: []string{"REDIS_RELAY_BIND"}},
			&cli.IntFlag{Name: "port", Value: 6380, Usage: "port to listen on for replicas", EnvVars: []string{"REDIS_RELAY_PORT"}},
			&cli.StringFlag{Name: "dir", Value: "./relay-data", Usage: "data directory (snapshot, log, state)", EnvVars: []string{"REDIS_RELAY_DIR"}},
			&cli.StringFlag{Name: "masteruser", Usage: "ACL user for the master", EnvVars: []string{"REDIS_RELAY_MASTERUSER"}},
			&cli.StringFlag{Name: "masterauth", Usage: "password for the master", EnvVars: []string{"REDIS_RELAY_MASTERAUTH"}},
			&cli.StringFlag{Name: "requirepass", Usage: "password replicas and clients must AUTH with", EnvVars: []string{"REDIS_RELAY_REQUIREPASS"}},
			&cli.StringFlag{Name: "repl-backlog-size", Value: "64mb", Usage: "memory ring of recent stream bytes", EnvVars: []string{"REDIS_RELAY_REPL_BACKLOG_SIZE"}},
			&cli.DurationFlag{Name: "repl-timeout", Value: 60 * time.Second, Usage: "silence after which a link is considered dead", EnvVars: []string{"REDIS_RELAY_REPL_TIMEOUT"}},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error", EnvVars: []string{"REDIS_RELAY_LOG_LEVEL"}},
			&cli.StringFlag{Name: "log-format", Value: "text", Usage: "text or json", EnvVars: []string{"REDIS_RELAY_LOG_FORMAT"}},
		},
		Action: func(c *cli.Context) error {
			logger, err := newLogger(c.String("log-level"), c.String("log-format"))
			if err != nil {
				return err
			}
			ring, err := parseSize(c.String("repl-backlog-size"))
			if err != nil {
				return fmt.Errorf("--repl-backlog-size: %w", err)
			}
			cfg := proxy.Config{
				MasterAddr:  c.String("replicaof"),
				MasterUser:  c.String("masteruser"),
				MasterAuth:  c.String("masterauth"),
				RequirePass: c.String("requirepass"),
				DataDir:     c.String("dir"),
				RingSize:    int(ring),
				ReplTimeout: c.Duration("repl-timeout"),
				Logger:      logger,
			}
			if cfg.MasterAddr == "" {
				return errors.New("--replicaof host:port is required")
			}
			relay, err := proxy.New(cfg)
			if err != nil {
				return err
			}
			defer relay.Close()
			addr := net.JoinHostPort(c.String("bind"), fmt.Sprint(c.Int("port")))
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return err
			}
			logger.Info("relay listening", "addr", ln.Addr().String(), "upstream", cfg.MasterAddr, "dir", cfg.DataDir)
			return relay.Run(c.Context, ln)
		},
	}
}

func newLogger(level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format: %q is neither text nor json", format)
}
