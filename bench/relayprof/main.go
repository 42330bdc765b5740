// Command relayprof runs the relay in-process with a CPU profile, for the
// benchmark's -relay-cpuprofile mode. It takes the subset of
// "redis-relay run" flags the benchmark uses (and --refresh-ratio, for
// -relay-args) and writes the profile when it receives SIGTERM or SIGINT.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/redis-relay/redis-relay/proxy"
)

func main() {
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile to this file")
	master := flag.String("replicaof", "", "upstream master host:port")
	bind := flag.String("bind", "127.0.0.1", "listen address")
	port := flag.Int("port", 6380, "listen port")
	dir := flag.String("dir", "./relay-data", "data directory")
	ring := flag.Int("repl-backlog-size", 64<<20, "memory ring bytes")
	refresh := flag.Float64("refresh-ratio", 0, "snapshot refresh ratio (0: the relay's default; negative: never)")
	flag.Parse()
	cfg := proxy.Config{MasterAddr: *master, DataDir: *dir, RingSize: *ring, RefreshRatio: *refresh}
	if err := run(*cpuprofile, *bind, *port, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "relayprof:", err)
		os.Exit(1)
	}
}

func run(cpuprofile, bind string, port int, cfg proxy.Config) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	relay, err := proxy.New(cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(bind, fmt.Sprint(port)))
	if err != nil {
		relay.Close()
		return err
	}
	if cpuprofile != "" {
		f, err := os.Create(cpuprofile)
		if err != nil {
			relay.Close()
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			relay.Close()
			return err
		}
		defer pprof.StopCPUProfile()
	}
	err = relay.Run(ctx, ln)
	err = errors.Join(err, relay.Close())
	if cpuprofile != "" {
		writeMemory(strings.TrimSuffix(cpuprofile, ".cpu.pprof"))
	}
	return err
}

// writeMemory writes, beside the CPU profile, the runtime's memory figures
// (for the RSS the benchmark measures) and a heap profile with every
// allocation made (alloc_space) up to now.
func writeMemory(base string) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	text := fmt.Sprintf("Sys %d\nHeapSys %d\nHeapInuse %d\nHeapIdle %d\nHeapReleased %d\nStackSys %d\nNumGC %d\nTotalAlloc %d\nMallocs %d\n",
		ms.Sys, ms.HeapSys, ms.HeapInuse, ms.HeapIdle, ms.HeapReleased, ms.StackSys, ms.NumGC, ms.TotalAlloc, ms.Mallocs)
	os.WriteFile(base+".memstats.txt", []byte(text), 0o644)
	runtime.GC() // publish the allocations made since the last cycle
	f, err := os.Create(base + ".heap.pprof")
	if err != nil {
		return
	}
	defer f.Close()
	pprof.Lookup("heap").WriteTo(f, 0)
}
