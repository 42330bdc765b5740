package upstream

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-relay/redis-relay/proxy/settings"
)

// Following Redis Sentinel directly, for deployments where Sentinel does not
// know the relay (it sits behind a replica Sentinel does not monitor, say).
// The relay asks the Sentinels for the current master of MasterName, then
// listens for +switch-master and re-points its upstream; it also re-asks
// every few seconds in case a message was missed.

const sentinelRecheck = 10 * time.Second

func (u *Link) FollowSentinels(ctx context.Context) {
	cfg := u.cfg.Get()
	if len(cfg.Sentinels) == 0 || cfg.MasterName == "" {
		return
	}
	for i := 0; ctx.Err() == nil; i++ {
		addr := cfg.Sentinels[i%len(cfg.Sentinels)]
		err := u.watchSentinel(ctx, addr, cfg)
		if ctx.Err() != nil {
			return
		}
		u.logger.Warn("sentinel unreachable, trying the next", "sentinel", addr, "err", err)
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
		}
	}
}

// watchSentinel follows one Sentinel until it fails or ctx ends.
func (u *Link) watchSentinel(ctx context.Context, addr string, cfg settings.Config) error {
	sc := redis.NewSentinelClient(&redis.Options{
		Addr: addr, Username: cfg.SentinelUser, Password: cfg.SentinelPassword, TLSConfig: sentinelTLS(cfg.SentinelTLS, addr),
		Protocol: 2, DisableIdentity: true,
		DialTimeout: handshakeTimeout, ReadTimeout: handshakeTimeout, WriteTimeout: handshakeTimeout,
	})
	defer sc.Close()
	ask := func() error {
		qctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
		defer cancel()
		hp, err := sc.GetMasterAddrByName(qctx, cfg.MasterName).Result()
		if err != nil {
			return fmt.Errorf("get-master-addr-by-name %s: %w", cfg.MasterName, err)
		}
		if len(hp) != 2 {
			return fmt.Errorf("get-master-addr-by-name %s: unexpected reply %v", cfg.MasterName, hp)
		}
		u.followMaster(net.JoinHostPort(hp[0], hp[1]), "sentinel "+addr)
		return nil
	}
	if err := ask(); err != nil {
		return err
	}
	ps := sc.Subscribe(ctx, "+switch-master")
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		return fmt.Errorf("subscribe +switch-master: %w", err)
	}
	msgs := ps.Channel()
	t := time.NewTicker(sentinelRecheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case m, ok := <-msgs:
			if !ok {
				return fmt.Errorf("subscription closed")
			}
			// <name> <old ip> <old port> <new ip> <new port>
			f := strings.Fields(m.Payload)
			if len(f) == 5 && f[0] == cfg.MasterName {
				u.followMaster(net.JoinHostPort(f[3], f[4]), "sentinel +switch-master")
			}
		case <-t.C:
			if err := ask(); err != nil {
				return err
			}
		}
	}
}

func (u *Link) followMaster(addr, source string) {
	if cur, _ := u.MasterAddr(); cur != addr {
		u.logger.Info("following new master", "upstream", addr, "previous", cur, "source", source)
		u.SetMaster(addr)
	}
}

// sentinelTLS returns the TLS settings for one Sentinel: base with the
// host of addr as the server name to verify, unless base names one.
func sentinelTLS(base *tls.Config, addr string) *tls.Config {
	if base == nil {
		return nil
	}
	c := base.Clone()
	if c.ServerName == "" {
		if host, _, err := net.SplitHostPort(addr); err == nil {
			c.ServerName = host
		}
	}
	return c
}
