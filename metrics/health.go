package metrics

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/redis-relay/redis-relay/proxy"
)

// Health endpoints, served beside /metrics:
//
//	/livez   200 while the relay process answers: its status can be read
//	         within livenessTimeout (a relay stuck on its own locks fails).
//	/readyz  200 while the relay can serve replicas: it holds a history
//	         (a snapshot and the log after it) and the empty-master guard
//	         is not holding one back. 503 with the reason otherwise.
//	/healthz the same as /livez, for probes written before /livez.
//
// Readiness does not need the upstream link: through an upstream outage
// the relay still serves partial resyncs and full syncs from what it
// holds.

// endpoints lists every path the metrics server answers; docs/metrics.md
// has a row for each.
var endpoints = []string{"/metrics", "/livez", "/readyz", "/healthz"}

// livenessTimeout bounds how long /livez waits for the relay's status.
const livenessTimeout = 2 * time.Second

// Ready reports whether a relay in state st can serve replicas, and if not,
// why. The /readyz endpoint and the redis_relay_ready metric both use it.
func Ready(st proxy.Status) (bool, string) {
	switch {
	case st.GuardTripped:
		return false, "empty-master guard holding back a new history: " + st.GuardReason
	case !st.HasHistory:
		return false, "no history yet: waiting for the first full sync from upstream"
	}
	return true, ""
}

func healthHandlers(mux *http.ServeMux, src Source) {
	live := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		ctx, cancel := context.WithTimeout(r.Context(), livenessTimeout)
		defer cancel()
		done := make(chan struct{})
		go func() {
			src.Status() // returns once the relay's locks are free
			close(done)
		}()
		select {
		case <-done:
			io.WriteString(w, "ok\n")
		case <-ctx.Done():
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "relay status not readable within %v\n", livenessTimeout)
		}
	}
	mux.HandleFunc("GET /livez", live)
	mux.HandleFunc("GET /healthz", live)
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if ok, why := Ready(src.Status()); !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, why+"\n")
			return
		}
		io.WriteString(w, "ready\n")
	})
}
