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
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/urfave/cli/v2"

	"github.com/redis-relay/redis-relay/metrics"
	"github.com/redis-relay/redis-relay/proxy"
	"github.com/redis-relay/redis-relay/proxy/settings"
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
	logOut := c.App.ErrWriter
	if s.Process.LogFile != "" {
		f, err := os.OpenFile(s.Process.LogFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			return fmt.Errorf("logfile: %w", err)
		}
		defer f.Close()
		logOut = f
	}
	logger, err := newLogger(logOut, s.Process.LogLevel, s.Process.LogFormat)
	if err != nil {
		return err
	}
	if s.Process.PidFile != "" {
		if err := os.WriteFile(s.Process.PidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			return fmt.Errorf("pidfile: %w", err)
		}
		defer os.Remove(s.Process.PidFile)
	}
	s.logIgnored(logger)
	cfg := s.proxyConfig(logger)
	if path := c.String("config"); path != "" {
		var mu sync.Mutex // one rewrite at a time, in the order they were asked for
		cfg.Rewrite = func(values map[string]string) error {
			mu.Lock()
			defer mu.Unlock()
			kept, left := s.persistable(values)
			if err := rewriteConfigFileOver(path, kept, s.inherited(kept, path)); err != nil {
				return err
			}
			logger.Info("config file rewritten", "path", path, "not_written", strings.Join(left, ","))
			return nil
		}
	}
	tlsServer, err := s.tlsConfigs(&cfg)
	if err != nil {
		return err
	}
	if cfg.MasterAddr == "" && len(cfg.Sentinels) == 0 && len(cfg.ClusterSeeds) == 0 {
		logger.Warn("no master configured: waiting for REPLICAOF host port")
	}
	switch {
	case !s.ProtectedMode:
		logger.Warn("protected mode is off: any client that reaches the relay's port can read the master's dataset unless requirepass is set")
	case s.RequirePass == "":
		logger.Info("protected mode: no requirepass is set, so only loopback clients are accepted; set requirepass (or requirepass-file), or protected-mode no, to serve replicas on other hosts")
	}
	var addrs, tlsAddrs []string
	var optional, tlsOptional []bool
	if s.Process.Port != 0 { // as in redis.conf: port 0 is no plain TCP listener
		addrs, optional = s.listenAddrs(s.Process.Port)
	}
	if s.Process.TLSPort != 0 {
		tlsAddrs, tlsOptional = s.listenAddrs(s.Process.TLSPort)
	}
	lc := net.ListenConfig{KeepAlive: s.Process.TCPKeepAlive}
	if s.Process.TCPKeepAlive == 0 {
		lc.KeepAlive = -1 // off
	}
	listeners := listenSpec{lc: lc, addrs: addrs, optional: optional, tlsAddrs: tlsAddrs, tlsOptional: tlsOptional, tls: tlsServer}
	return serveRelay(c.Context, cfg, listeners, s.Process.MetricsAddr, logger)
}

// persistable returns the settings CONFIG REWRITE may write, and the names
// of those it must leave out: a password (or the *-file setting it is
// read from) whose value came from the environment, a flag or a *-file
// directive stays out of the file, so a rewrite never copies a secret, or
// where one comes from, to where it was not written before.
func (s *Settings) persistable(values map[string]string) (kept map[string]string, left []string) {
	kept = make(map[string]string, len(values))
	for name, v := range values {
		if d := settings.Lookup(name); d != nil && d.Rewrite == settings.RewriteIfFromFile && !s.fromConfigFile(d.Name) && v != "" {
			left = append(left, name)
			continue
		}
		kept[name] = v
	}
	slices.Sort(left)
	return kept, left
}

// inherited returns the settings whose value is still the one a file
// included by the config file at mainPath gave them at start-up.
func (s *Settings) inherited(values map[string]string, mainPath string) map[string]bool {
	out := make(map[string]bool)
	for name, v := range values {
		d := settings.Lookup(name)
		if d == nil || !s.fromConfigFile(d.Name) || strings.HasPrefix(s.origin[d.Name], mainPath+":") {
			continue
		}
		if args, err := normalizedArgs(d, v); err == nil && slices.Equal(args, d.Format(&s.Config)) {
			out[d.Name] = true
		}
	}
	return out
}

// fromConfigFile reports whether the value of the named directive was read
// from a config file line.
func (s *Settings) fromConfigFile(name string) bool {
	o, ok := s.origin[name]
	return ok && !strings.HasPrefix(o, "--") && !strings.HasPrefix(o, "REDIS_RELAY_") && !strings.HasSuffix(o, "-file")
}

// listenSpec is where the relay listens: plain and TLS addresses, each
// perhaps optional (bind's "-" prefix).
type listenSpec struct {
	lc          net.ListenConfig
	addrs       []string
	optional    []bool
	tlsAddrs    []string
	tlsOptional []bool
	tls         *tls.Config
}

// listen opens every listener; an optional address that cannot be bound is
// logged and skipped.
func (ls listenSpec) listen(ctx context.Context, logger *slog.Logger) ([]net.Listener, error) {
	var lns []net.Listener
	open := func(addr string, optional bool, what string) (net.Listener, error) {
		ln, err := ls.lc.Listen(ctx, "tcp", addr)
		if err != nil && optional {
			logger.Warn("optional bind address unavailable, skipped", "addr", addr, "err", err)
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("listen %s%s: %w", what, addr, err)
		}
		return ln, nil
	}
	fail := func(err error) ([]net.Listener, error) {
		for _, l := range lns {
			l.Close()
		}
		return nil, err
	}
	for i, addr := range ls.addrs {
		ln, err := open(addr, ls.optional[i], "")
		if err != nil {
			return fail(err)
		}
		if ln != nil {
			lns = append(lns, ln)
		}
	}
	for i, addr := range ls.tlsAddrs {
		ln, err := open(addr, ls.tlsOptional[i], "for TLS on ")
		if err != nil {
			return fail(err)
		}
		if ln != nil {
			lns = append(lns, tls.NewListener(ln, ls.tls))
		}
	}
	if len(lns) == 0 {
		return nil, errors.New("nowhere to listen: port and tls-port are both 0, or every bind address is unavailable")
	}
	return lns, nil
}

// tlsConfigs builds the TLS settings: the client side of the master link
// (into cfg.UpstreamTLS), of the snapshot source's (cfg.SnapshotSourceTLS)
// and of the Sentinel links (cfg.SentinelTLS), and the server side of the
// TLS port (returned).
func (s *Settings) tlsConfigs(cfg *proxy.Config) (*tls.Config, error) {
	if !s.Process.TLSReplication && s.Process.TLSPort == 0 && !s.Process.SentinelTLS && !s.Process.SourceTLS {
		return nil, nil
	}
	var certs []tls.Certificate
	if s.Process.TLSCertFile != "" || s.Process.TLSKeyFile != "" {
		cert, err := tls.LoadX509KeyPair(s.Process.TLSCertFile, s.Process.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls-cert-file/tls-key-file: %w", err)
		}
		certs = []tls.Certificate{cert}
	}
	var pool *x509.CertPool
	if s.Process.TLSCACertFile != "" {
		pem, err := os.ReadFile(s.Process.TLSCACertFile)
		if err != nil {
			return nil, fmt.Errorf("tls-ca-cert-file: %w", err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls-ca-cert-file: no certificate in %s", s.Process.TLSCACertFile)
		}
	}
	if s.Process.TLSReplication {
		cfg.UpstreamTLS = &tls.Config{RootCAs: pool, Certificates: certs, MinVersion: tls.VersionTLS12}
	}
	if s.Process.SentinelTLS {
		cfg.SentinelTLS = &tls.Config{RootCAs: pool, Certificates: certs, MinVersion: tls.VersionTLS12}
	}
	if s.Process.SourceTLS {
		cfg.SnapshotSourceTLS = &tls.Config{RootCAs: pool, Certificates: certs, MinVersion: tls.VersionTLS12}
	}
	if s.Process.TLSPort == 0 {
		return nil, nil
	}
	if len(certs) == 0 {
		return nil, errors.New("tls-port needs tls-cert-file and tls-key-file")
	}
	server := &tls.Config{Certificates: certs, ClientCAs: pool, MinVersion: tls.VersionTLS12}
	switch s.Process.TLSAuthClients {
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

// serveRelay runs the relay on the listeners of ls, and the metrics server
// on metricsAddr unless it is empty, until ctx ends or either fails. The
// metrics server stops last.
func serveRelay(ctx context.Context, cfg proxy.Config, ls listenSpec, metricsAddr string, logger *slog.Logger) error {
	relay, err := proxy.New(cfg)
	if err != nil {
		return err
	}
	lns, err := ls.listen(ctx, logger)
	if err != nil {
		return errors.Join(err, relay.Close())
	}
	var mln net.Listener
	if metricsAddr != "" {
		if mln, err = net.Listen("tcp", metricsAddr); err != nil {
			for _, l := range lns {
				l.Close()
			}
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
			err := metrics.ServeListener(metricsCtx, mln, metrics.NewRegistry(relay), relay, logger)
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
