package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/redis-relay/redis-relay/proxy/acl"
	"github.com/redis-relay/redis-relay/proxy/admin"
	"github.com/redis-relay/redis-relay/proxy/downstream"
	"github.com/redis-relay/redis-relay/proxy/history"
	"github.com/redis-relay/redis-relay/proxy/settings"
	"github.com/redis-relay/redis-relay/proxy/upstream"
	"github.com/redis-relay/redis-relay/replstream"
)

// Config is the relay's configuration (see package settings). The alias
// lets callers build one as proxy.Config next to proxy.New.
type Config = settings.Config

// Relay builds the relay's parts and runs them: the history (package
// history), the upstream link (package upstream), the downstream server
// (package downstream) and the admin commands (package admin). It holds no
// state of its own beyond the wiring; see the package doc for how the
// parts talk.
type Relay struct {
	cfg    *settings.Live
	logger *slog.Logger
	hist   *history.Store
	up     *upstream.Link
	srv    *downstream.Server
	admin  *admin.Admin
	acl    *acl.ACL // the users: AUTH, the check before every command, ACL

	runID   string       // identifies this process, as Redis's run_id does
	started time.Time    // for uptime_in_seconds
	rates   rates        // the instantaneous_* figures of INFO stats
	port    atomic.Int32 // the first listener's port (INFO tcp_port); set by Run

	stopMu   sync.Mutex
	shutdown context.CancelFunc // ends Run (SHUTDOWN); set by Run; guarded by stopMu
}

// New opens the data dir and recovers the history kept there, if any.
func New(cfg Config) (*Relay, error) {
	if len(cfg.ClusterSeeds) > 0 && (cfg.MasterAddr != "" || len(cfg.Sentinels) > 0) {
		return nil, errors.New("cluster-seeds excludes replicaof and sentinel-addrs: the cluster names the shard's master")
	}
	cfg.FillDefaults()
	users, err := loadUsers(cfg)
	if err != nil {
		return nil, err
	}
	live := settings.NewLive(cfg)
	hist, err := history.Open(live, cfg.Logger)
	if err != nil {
		return nil, err
	}
	r := &Relay{
		cfg: live, logger: cfg.Logger, hist: hist,
		runID: replstream.RandomHex40(), started: time.Now(),
	}
	r.acl = acl.New()
	r.acl.Replace(users)
	if _, defined := r.acl.User(cfg.RequireUser); cfg.RequireUser != "" && !defined {
		r.acl.AlsoFollowRequirePass(cfg.RequireUser) // requireuser, unless a user line defines it
	}
	r.acl.SetRequirePass(cfg.RequirePass)
	r.up = upstream.New(live, hist, cfg.Logger)
	r.srv = downstream.New(live, hist, r.up, r.acl, cfg.Logger)
	r.up.SetAckSource(r.srv)
	r.admin = admin.New(admin.Options{
		Config: live, Logger: cfg.Logger, Relay: adminView{r},
		Upstream: r.up, History: hist, Connections: r.srv, PubSub: r.srv.PubSub(), ACL: r.acl,
		RunID: r.runID, Started: r.started, Version: Version,
	})
	r.srv.SetCommands(r.admin.Handler, r.admin.NotServed)
	return r, nil
}

// Run runs the upstream link and serves downstream connections on the
// listeners (plain TCP, or TLS from tls.NewListener) until ctx ends. The
// first listener's port is announced upstream unless AnnouncePort is set.
func (r *Relay) Run(ctx context.Context, lns ...net.Listener) error {
	if len(lns) == 0 {
		return errors.New("no listener")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r.port.Store(int32(listenerPort(lns[0])))
	r.stopMu.Lock()
	r.shutdown = cancel
	r.stopMu.Unlock()
	var wg sync.WaitGroup
	wg.Add(5)
	go func() {
		defer wg.Done()
		r.sampleRates(ctx)
	}()
	go func() {
		defer wg.Done()
		r.up.FollowSentinels(ctx)
	}()
	go func() {
		defer wg.Done()
		r.up.FollowCluster(ctx)
	}()
	go func() {
		defer wg.Done()
		r.up.Run(ctx, listenerPort(lns[0]))
	}()
	go func() {
		defer wg.Done()
		r.up.RefreshLoop(ctx)
	}()
	errs := make(chan error, len(lns))
	for _, ln := range lns {
		go func() { errs <- r.srv.Serve(ctx, ln) }()
	}
	var err error
	for range lns {
		if e := <-errs; e != nil && err == nil {
			err = e
			cancel()
		}
	}
	cancel()
	wg.Wait()
	return err
}

// stop ends Run (SHUTDOWN).
func (r *Relay) stop() {
	r.stopMu.Lock()
	stop := r.shutdown
	r.stopMu.Unlock()
	if stop != nil {
		stop()
	}
}

// Close releases the data dir. Call it after Run has returned.
func (r *Relay) Close() error { return r.hist.Close() }

// ReleaseGuard makes the snapshot held by the empty-master guard the
// relay's history (replicas then full-sync to it and follow the new
// master), or lets a stream held by the command tripwire through.
func (r *Relay) ReleaseGuard() error { return r.hist.ReleaseGuard() }

// currentConfig is the running configuration with the upstream that
// REPLICAOF (or Sentinel) last named as replicaof.
func (r *Relay) currentConfig() Config {
	cfg := r.cfg.Get()
	cfg.MasterAddr, _ = r.up.MasterAddr()
	return cfg
}

// adminView is the relay as the admin commands see it (admin.Relay).
type adminView struct{ r *Relay }

func (v adminView) Status() Status                 { return v.r.Status() }
func (v adminView) Replicas() []ReplicaInfo        { return v.r.Replicas() }
func (v adminView) CurrentConfig() settings.Config { return v.r.currentConfig() }
func (v adminView) Settings() map[string]string    { return v.r.Settings() }
func (v adminView) Stop()                          { v.r.stop() }

// Settings returns every setting CONFIG REWRITE may write with its current
// value, as Setting.Set reads it back. Passwords are in clear: the caller
// decides which of them may reach a file.
func (r *Relay) Settings() map[string]string {
	cfg := r.currentConfig()
	if len(cfg.ClusterSeeds) > 0 {
		cfg.MasterAddr = "" // the cluster names it; replicaof beside cluster-seeds stops start-up
	}
	out := make(map[string]string, len(settings.Table()))
	for _, s := range settings.Table() {
		if s.Rewrite == settings.RewriteNever {
			continue
		}
		if args := s.Format(&cfg); len(args) > 0 {
			out[s.Name] = strings.Join(args, " ")
		}
	}
	return out
}

// ParseCompression checks an upstream-compression value: whether it asks
// for compression, and at which zstd level.
func ParseCompression(v string) (level zstd.EncoderLevel, on bool, err error) {
	return settings.CompressionLevel(v)
}

// listenerPort is the port a listener listens on.
func listenerPort(ln net.Listener) int {
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	p, _ := strconv.Atoi(port)
	return p
}
