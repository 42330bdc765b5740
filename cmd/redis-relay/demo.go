package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/urfave/cli/v2"

	"github.com/redis-relay/redis-relay/internal/redisproc"
	"github.com/redis-relay/redis-relay/proxy"
)

func demoCommand() *cli.Command {
	return &cli.Command{
		Name:  "demo",
		Usage: "start a master, a relay and replicas on this machine and show them in sync",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "replicas", Value: 3, Usage: "replicas behind the relay"},
			&cli.IntFlag{Name: "keys", Value: 200000, Usage: "keys in the master before the relay starts"},
			&cli.DurationFlag{Name: "duration", Value: 20 * time.Second, Usage: "how long to run the write load (0: until Ctrl-C)"},
		},
		Action: func(c *cli.Context) error {
			return runDemo(c.Context, c.App.Writer, c.Int("replicas"), c.Int("keys"), c.Duration("duration"))
		},
	}
}

// demoServer is a redis-server process started by the demo.
type demoServer struct {
	name string
	port int
	proc *redisproc.Proc
	cli  *redis.Client
}

// startDemoServer starts redis-server on a free port in its own directory
// under dir (redisproc.Start: the server answering is the one started).
func startDemoServer(ctx context.Context, bin, name, dir string, args ...string) (*demoServer, error) {
	sdir := filepath.Join(dir, name)
	if err := os.MkdirAll(sdir, 0o755); err != nil {
		return nil, err
	}
	p, err := redisproc.Start(ctx, redisproc.Options{Bin: bin, Dir: sdir, Args: args})
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return &demoServer{name: name, port: p.Port, proc: p, cli: redis.NewClient(&redis.Options{Addr: p.Addr()})}, nil
}

func (s *demoServer) stop() {
	s.cli.Close()
	s.proc.Kill()
}

func runDemo(ctx context.Context, out io.Writer, nReplicas, keys int, duration time.Duration) error {
	bin, err := redisproc.Binary()
	if err != nil {
		return fmt.Errorf("%w, or run `make demo`, which does", err)
	}
	dir, err := os.MkdirTemp("", "redis-relay-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var servers []*demoServer
	defer func() {
		for _, s := range servers {
			s.stop()
		}
	}()

	master, err := startDemoServer(ctx, bin, "master", dir)
	if err != nil {
		return err
	}
	servers = append(servers, master)
	fmt.Fprintf(out, "master   127.0.0.1:%d: writing %d keys\n", master.port, keys)
	if err := master.cli.Do(ctx, "DEBUG", "POPULATE", keys, "key", 64).Err(); err != nil {
		return fmt.Errorf("populate master: %w", err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	relay, err := proxy.New(proxy.Config{
		MasterAddr: fmt.Sprintf("127.0.0.1:%d", master.port),
		DataDir:    filepath.Join(dir, "relay"),
		Logger:     slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return err
	}
	defer relay.Close()
	relayCtx, stopRelay := context.WithCancel(context.Background())
	relayDone := make(chan error, 1)
	go func() { relayDone <- relay.Run(relayCtx, ln) }()
	defer func() { stopRelay(); <-relayDone }()
	relayPort := ln.Addr().(*net.TCPAddr).Port
	fmt.Fprintf(out, "relay    127.0.0.1:%d: data dir %s\n", relayPort, filepath.Join(dir, "relay"))

	for i := range nReplicas {
		r, err := startDemoServer(ctx, bin, fmt.Sprintf("replica%d", i+1), dir, "--replicaof", "127.0.0.1", strconv.Itoa(relayPort))
		if err != nil {
			return err
		}
		servers = append(servers, r)
		fmt.Fprintf(out, "replica%d 127.0.0.1:%d: replica of the relay\n", i+1, r.port)
	}

	loadCtx, stopLoad := context.WithCancel(ctx)
	if duration > 0 {
		loadCtx, stopLoad = context.WithTimeout(ctx, duration)
	}
	defer stopLoad()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; loadCtx.Err() == nil; i++ {
			master.cli.Set(loadCtx, fmt.Sprintf("demo:%d", i%10000), i, 0)
			master.cli.Incr(loadCtx, "demo:counter")
			time.Sleep(time.Millisecond)
		}
	}()
	fmt.Fprintln(out, "\nwriting to the master; Ctrl-C stops")
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for loadCtx.Err() == nil {
		select {
		case <-tick.C:
			printDemoStatus(ctx, out, master, relay, servers[1:])
		case <-loadCtx.Done():
		}
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil
	}

	fmt.Fprintln(out, "\nload stopped; waiting for every replica to match the master")
	deadline := time.Now().Add(30 * time.Second)
	for {
		want, _ := master.cli.Do(ctx, "DEBUG", "DIGEST").Text()
		same := true
		for _, r := range servers[1:] {
			if got, _ := r.cli.Do(ctx, "DEBUG", "DIGEST").Text(); got != want {
				same = false
			}
		}
		if same {
			printDemoStatus(ctx, out, master, relay, servers[1:])
			fsync, _ := master.cli.Info(ctx, "stats").Result()
			fmt.Fprintf(out, "\nin sync: every replica's DEBUG DIGEST is %s; master full syncs: %s\n", want, redisproc.ParseInfo(fsync)["sync_full"])
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("replicas did not match the master within 30 s")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func printDemoStatus(ctx context.Context, out io.Writer, master *demoServer, relay *proxy.Relay, replicas []*demoServer) {
	info, _ := master.cli.Info(ctx, "replication").Result()
	st := relay.Status()
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "\nNODE\tOFFSET\tLAG (bytes)\tLINK\tKEYS\n")
	moff, _ := strconv.ParseInt(redisproc.ParseInfo(info)["master_repl_offset"], 10, 64)
	mkeys, _ := master.cli.DBSize(ctx).Result()
	fmt.Fprintf(tw, "master\t%d\t-\t-\t%d\n", moff, mkeys)
	fmt.Fprintf(tw, "relay\t%d\t%d\t%s\t-\n", st.MasterOffset(), moff-st.MasterOffset(), st.LinkState)
	for _, r := range replicas {
		text, _ := r.cli.Info(ctx, "replication").Result()
		ri := redisproc.ParseInfo(text)
		off, _ := strconv.ParseInt(ri["slave_repl_offset"], 10, 64)
		keys, _ := r.cli.DBSize(ctx).Result()
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%d\n", r.name, off, moff-off, ri["master_link_status"], keys)
	}
	tw.Flush()
}
