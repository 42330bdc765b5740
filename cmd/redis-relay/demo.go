package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/urfave/cli/v2"

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
	name   string
	port   int
	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has exited
	cli    *redis.Client
}

// startDemoServer starts redis-server on a free port. Another process may
// take the port between the probe and the bind, so a server counts as
// started only when the one answering on the port has our process's pid;
// when the bind was lost, it tries again on another port.
func startDemoServer(ctx context.Context, bin, name, dir string, args ...string) (*demoServer, error) {
	var err error
	for range 5 {
		var s *demoServer
		if s, err = tryDemoServer(ctx, bin, name, dir, args...); err == nil {
			return s, nil
		}
	}
	return nil, err
}

func tryDemoServer(ctx context.Context, bin, name, dir string, args ...string) (*demoServer, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	sdir := filepath.Join(dir, name)
	if err := os.MkdirAll(sdir, 0o755); err != nil {
		return nil, err
	}
	argv := []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", sdir, "--save", "",
		"--logfile", filepath.Join(sdir, "redis.log")}
	argv = append(append(argv, proxy.DebugCommandArgs(bin)...), args...)
	cmd := exec.Command(bin, argv...)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	s := &demoServer{name: name, port: port, cmd: cmd, exited: make(chan struct{}),
		cli: redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})}
	go func() {
		cmd.Wait()
		close(s.exited)
	}()
	for i := 0; ; i++ {
		select {
		case <-s.exited:
			s.cli.Close()
			return nil, fmt.Errorf("%s exited at start (port %d taken?); see %s", name, port, filepath.Join(sdir, "redis.log"))
		default:
		}
		if info, err := s.cli.Info(ctx, "server").Result(); err == nil {
			if strings.Contains(info, "process_id:"+strconv.Itoa(cmd.Process.Pid)+"\r\n") {
				return s, nil
			}
			s.stop()
			return nil, fmt.Errorf("another server answers on port %d", port)
		}
		if i == 100 {
			s.stop()
			return nil, fmt.Errorf("%s did not answer; see %s", name, filepath.Join(sdir, "redis.log"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *demoServer) stop() {
	s.cli.Close()
	s.cmd.Process.Kill()
	<-s.exited
}

func freePort() (int, error) {
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if port != 6379 {
			return port, nil
		}
	}
}

func runDemo(ctx context.Context, out io.Writer, nReplicas, keys int, duration time.Duration) error {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return errors.New("redis-server not found on PATH: install it (apt-get install -y redis-server) or run `make demo`, which does")
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
			fmt.Fprintf(out, "\nin sync: every replica's DEBUG DIGEST is %s; master full syncs: %s\n", want, infoValue(fsync, "sync_full"))
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
	moff, _ := strconv.ParseInt(infoValue(info, "master_repl_offset"), 10, 64)
	mkeys, _ := master.cli.DBSize(ctx).Result()
	fmt.Fprintf(tw, "master\t%d\t-\t-\t%d\n", moff, mkeys)
	fmt.Fprintf(tw, "relay\t%d\t%d\t%s\t-\n", st.MasterOffset(), moff-st.MasterOffset(), st.LinkState)
	for _, r := range replicas {
		ri, _ := r.cli.Info(ctx, "replication").Result()
		off, _ := strconv.ParseInt(infoValue(ri, "slave_repl_offset"), 10, 64)
		keys, _ := r.cli.DBSize(ctx).Result()
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%d\n", r.name, off, moff-off, infoValue(ri, "master_link_status"), keys)
	}
	tw.Flush()
}

func infoValue(info, field string) string {
	for _, line := range strings.Split(info, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == field {
			return v
		}
	}
	return ""
}
