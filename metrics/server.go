package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// shutdownGrace bounds how long Serve waits for scrapes in flight once its
// context ends.
const shutdownGrace = 5 * time.Second

// Handler serves reg in the Prometheus exposition formats (text, and
// OpenMetrics when asked for). A family that fails to gather is left out
// rather than failing the whole scrape; promhttp_metric_handler_errors_total,
// which Handler registers on reg with the other promhttp_* families, counts
// such failures.
func Handler(reg *prometheus.Registry) http.Handler {
	return promhttp.InstrumentMetricHandler(reg, promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		Registry:          reg,
		ErrorHandling:     promhttp.ContinueOnError,
		EnableOpenMetrics: true,
	}))
}

// Serve listens on addr and serves /metrics from reg and the health
// endpoints of src (/livez, /readyz, /healthz: see health.go) until ctx ends; it then shuts the server down, letting scrapes in
// flight finish for a few seconds. It returns nil after such a shutdown, or
// the error that stopped it.
func Serve(ctx context.Context, addr string, reg *prometheus.Registry, src Source, logger *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen for metrics on %s: %w", addr, err)
	}
	return ServeListener(ctx, ln, reg, src, logger)
}

// ServeListener is Serve on a listener the caller opened; it closes ln.
func ServeListener(ctx context.Context, ln net.Listener, reg *prometheus.Registry, src Source, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.Default()
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", Handler(reg))
	healthHandlers(mux, src)
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	logger.Info("metrics listening", "addr", ln.Addr().String())

	select {
	case err := <-served:
		return fmt.Errorf("serve metrics: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("shut down metrics server: %w", err)
	}
	return nil
}
