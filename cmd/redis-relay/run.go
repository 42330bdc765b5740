package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"

	"github.com/urfave/cli/v2"

	"github.com/redis-relay/redis-relay/metrics"
	"github.com/redis-relay/redis-relay/proxy"
)

func runCommand() *cli.Command {
	flags := []cli.Flag{
		&cli.StringFlag{
			Name:     "config",
			Usage:    "read directives from this redis.conf-style `FILE`; the environment and flags override it, CONFIG REWRITE updates it",
			EnvVars:  []string{"REDIS_RELAY_CONFIG"},
			Category: "config",
		},
		&cli.BoolFlag{
			Name:     "check-config",
			Usage:    "print the settings as a config file (defaults < file < environment < flags) and exit",
			Category: "config",
		},
	}
	return &cli.Command{
		Name:  "run",
		Usage: "run the relay in front of a master",
		Description: "Every directive of the config file has a flag of the same name and an environment\n" +
			"twin: --repl-timeout is REDIS_RELAY_REPL_TIMEOUT. Sizes take redis.conf units (1k = 1000,\n" +
			"1kb = 1024, mb, gb); durations are Go durations (90s, 2h) or a number of seconds.",
		Flags:  append(flags, directiveFlags()...),
		Action: runAction,
	}
}

func runAction(c *cli.Context) error {
	s, err := settingsFromContext(c)
	if err != nil {
		return err
	}
	if c.Bool("check-config") {
		return s.writeConfig(c.App.Writer)
	}
	logger, err := newLogger(c.App.ErrWriter, s.LogLevel, s.LogFormat)
	if err != nil {
		return err
	}
	s.logIgnored(logger)
	cfg := s.proxyConfig(logger)
	if path := c.String("config"); path != "" {
		var mu sync.Mutex // one rewrite at a time, in the order they were asked for
		cfg.Rewrite = func(settings map[string]string) error {
			mu.Lock()
			defer mu.Unlock()
			if err := rewriteConfigFile(path, settings); err != nil {
				return err
			}
			logger.Info("config file rewritten", "path", path)
			return nil
		}
	}
	if cfg.MasterAddr == "" {
		logger.Warn("no master configured: waiting for REPLICAOF host port")
	}
	return serveRelay(c.Context, cfg, s.ListenAddr(), s.MetricsAddr, logger)
}

// serveRelay runs the relay on listenAddr, and the metrics server on
// metricsAddr unless it is empty, until ctx ends or either fails. The
// metrics server stops last.
func serveRelay(ctx context.Context, cfg proxy.Config, listenAddr, metricsAddr string, logger *slog.Logger) error {
	relay, err := proxy.New(cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", listenAddr)
	if err != nil {
		return errors.Join(err, relay.Close())
	}
	var mln net.Listener
	if metricsAddr != "" {
		if mln, err = net.Listen("tcp", metricsAddr); err != nil {
			ln.Close()
			return errors.Join(fmt.Errorf("listen for metrics: %w", err), relay.Close())
		}
	}

	runCtx, stopRelay := context.WithCancel(ctx)
	defer stopRelay()
	metricsCtx, stopMetrics := context.WithCancel(context.Background())
	defer stopMetrics()
	metricsDone := make(chan error, 1)
	if mln != nil {
		go func() {
			err := metrics.ServeListener(metricsCtx, mln, metrics.NewRegistry(relay), logger)
			if err != nil {
				stopRelay() // the relay does not run unobserved
			}
			metricsDone <- err
		}()
	} else {
		metricsDone <- nil
	}

	logger.Info("relay listening", "addr", ln.Addr().String(), "upstream", cfg.MasterAddr, "path", cfg.DataDir)
	err = relay.Run(runCtx, ln)
	err = errors.Join(err, relay.Close())
	stopMetrics()
	return errors.Join(err, <-metricsDone)
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log-format: %q is neither text nor json", format)
}
