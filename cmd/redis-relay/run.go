package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
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
	tlsServer, err := s.tlsConfigs(&cfg)
	if err != nil {
		return err
	}
	if cfg.MasterAddr == "" && len(cfg.Sentinels) == 0 {
		logger.Warn("no master configured: waiting for REPLICAOF host port")
	}
	var tlsAddr string
	if s.TLSPort > 0 {
		tlsAddr = net.JoinHostPort(s.Bind, strconv.Itoa(s.TLSPort))
	}
	listenAddr := s.ListenAddr()
	if s.Port == 0 { // as in redis.conf: no plain TCP listener
		listenAddr = ""
	}
	return serveRelay(c.Context, cfg, listenAddr, tlsAddr, tlsServer, s.MetricsAddr, logger)
}

// tlsConfigs builds the TLS settings: the client side of the master link
// (into cfg.UpstreamTLS) and the server side of the TLS port (returned).
func (s *Settings) tlsConfigs(cfg *proxy.Config) (*tls.Config, error) {
	if !s.TLSReplication && s.TLSPort == 0 {
		return nil, nil
	}
	var certs []tls.Certificate
	if s.TLSCertFile != "" || s.TLSKeyFile != "" {
		cert, err := tls.LoadX509KeyPair(s.TLSCertFile, s.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls-cert-file/tls-key-file: %w", err)
		}
		certs = []tls.Certificate{cert}
	}
	var pool *x509.CertPool
	if s.TLSCACertFile != "" {
		pem, err := os.ReadFile(s.TLSCACertFile)
		if err != nil {
			return nil, fmt.Errorf("tls-ca-cert-file: %w", err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls-ca-cert-file: no certificate in %s", s.TLSCACertFile)
		}
	}
	if s.TLSReplication {
		cfg.UpstreamTLS = &tls.Config{RootCAs: pool, Certificates: certs, MinVersion: tls.VersionTLS12}
	}
	if s.TLSPort == 0 {
		return nil, nil
	}
	if len(certs) == 0 {
		return nil, errors.New("tls-port needs tls-cert-file and tls-key-file")
	}
	server := &tls.Config{Certificates: certs, ClientCAs: pool, MinVersion: tls.VersionTLS12}
	switch s.TLSAuthClients {
	case "yes":
		server.ClientAuth = tls.RequireAndVerifyClientCert
	case "optional":
		server.ClientAuth = tls.VerifyClientCertIfGiven
	}
	if server.ClientAuth != tls.NoClientCert && pool == nil {
		return nil, errors.New("tls-auth-clients needs tls-ca-cert-file (or set it to no)")
	}
	return server, nil
}

// serveRelay runs the relay on listenAddr, and the metrics server on
// metricsAddr unless it is empty, until ctx ends or either fails. The
// metrics server stops last.
func serveRelay(ctx context.Context, cfg proxy.Config, listenAddr, tlsAddr string, tlsServer *tls.Config, metricsAddr string, logger *slog.Logger) error {
	relay, err := proxy.New(cfg)
	if err != nil {
		return err
	}
	var lns []net.Listener
	closeAll := func() {
		for _, l := range lns {
			l.Close()
		}
	}
	if listenAddr != "" {
		ln, err := net.Listen("tcp", listenAddr)
		if err != nil {
			return errors.Join(err, relay.Close())
		}
		lns = append(lns, ln)
	}
	if tlsAddr != "" {
		ln, err := net.Listen("tcp", tlsAddr)
		if err != nil {
			closeAll()
			return errors.Join(fmt.Errorf("listen for TLS: %w", err), relay.Close())
		}
		lns = append(lns, tls.NewListener(ln, tlsServer))
	}
	if len(lns) == 0 {
		return errors.Join(errors.New("port and tls-port are both 0: nowhere to listen"), relay.Close())
	}
	var mln net.Listener
	if metricsAddr != "" {
		if mln, err = net.Listen("tcp", metricsAddr); err != nil {
			closeAll()
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

	for _, ln := range lns {
		logger.Info("relay listening", "addr", ln.Addr().String(), "upstream", cfg.MasterAddr, "path", cfg.DataDir)
	}
	err = relay.Run(runCtx, lns...)
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
