// Command redis-relay runs the relay and its operator tools.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/redis/go-redis/v9"
	"github.com/urfave/cli/v2"

	"github.com/redis-relay/redis-relay/proxy"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	redis.SetLogger(quietRedisLogger{})
	if err := newApp().RunContext(ctx, os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "redis-relay:", err)
		os.Exit(1)
	}
}

func newApp() *cli.App {
	return &cli.App{
		Name:    "redis-relay",
		Usage:   "a transparent replication relay for Redis",
		Version: proxy.Version,
		Commands: []*cli.Command{
			runCommand(),
			statusCommand(),
			guardCommand(),
			recoverCommand(),
			rdbCommand(),
			demoCommand(),
			versionCommand(),
			completionCommand(),
		},
		// redis-relay completion bash|zsh|fish|powershell prints a script.
		EnableBashCompletion: true,
	}
}
