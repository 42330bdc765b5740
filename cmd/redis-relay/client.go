package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"github.com/urfave/cli/v2"

	"github.com/redis-relay/redis-relay/proxy/settings"
)

// adminFlags are the flags of the commands that talk to a running relay.
func adminFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "addr", Value: defaultAddr(), Usage: "the relay's `HOST:PORT`", EnvVars: []string{"REDIS_RELAY_ADDR"}},
		&cli.StringFlag{Name: "password", Usage: "the relay's requirepass", EnvVars: []string{"REDIS_RELAY_PASSWORD"}},
	}
}

// defaultAddr is where a relay started with the default bind and port
// listens.
func defaultAddr() string {
	def := settings.Default()
	return net.JoinHostPort(strings.TrimPrefix(def.Process.Bind[0], "-"), strconv.Itoa(def.Process.Port))
}

// adminClient connects to the relay named by --addr. It speaks RESP2 and
// skips the CLIENT SETINFO and maintenance-notification handshakes, which a
// relay (like Redis 7.0) does not know; it does not retry, so an operator
// hears at once that the relay is down.
func adminClient(c *cli.Context) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr:                     c.String("addr"),
		Password:                 c.String("password"),
		Protocol:                 2,
		DisableIdentity:          true,
		MaxRetries:               -1,
		DialerRetries:            1,
		DialTimeout:              3 * time.Second,
		ReadTimeout:              10 * time.Second,
		WriteTimeout:             10 * time.Second,
		ContextTimeoutEnabled:    true,
		PoolSize:                 1,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
}

// quietRedisLogger drops go-redis's own log lines ("failed to dial after
// 1 attempts"): the commands report every error themselves, and in --watch
// mode stray lines would garble the screen.
type quietRedisLogger struct{}

func (quietRedisLogger) Printf(context.Context, string, ...any) {}

// explainAdminError turns what go-redis returns into something an operator
// can act on.
func explainAdminError(addr string, err error) error {
	var ne net.Error
	var oe *net.OpError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.Canceled):
		return err
	case redis.HasErrorPrefix(err, "NOAUTH"):
		return fmt.Errorf("the relay at %s requires a password: use --password or REDIS_RELAY_PASSWORD", addr)
	case redis.HasErrorPrefix(err, "WRONGPASS"):
		return fmt.Errorf("the relay at %s rejected the password: %w", addr, err)
	case errors.As(err, &oe) && oe.Op == "dial", errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("cannot reach the relay at %s: %w", addr, err)
	}
	return fmt.Errorf("relay at %s: %w", addr, err)
}
