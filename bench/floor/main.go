// Command floor is the least a replication relay can do with a master's
// stream, and so the floor the benchmark compares the relay's CPU and lag
// against. It connects to a master as a replica would (PING, REPLCONF
// listening-port, REPLCONF capa eof capa psync2, PSYNC), skips the snapshot,
// and then loops: read the socket in 256 KiB chunks, write each chunk to a
// file at its offset (WriteAt), copy it into a 64 MiB memory ring. With
// -fsync a goroutine fsyncs the file once a second, the relay's durability.
// It sends REPLCONF ACK with its offset every second, and when the master
// cuts the link it reconnects and asks to continue where it stopped
// (PSYNC <replid> <offset+1>), as a stock replica does.
//
// For the benchmark it answers on a loopback port a small subset of RESP:
// PING, and INFO with the fields a replica reports (master_link_status,
// master_sync_in_progress, slave_repl_offset), so the benchmark reads its
// offset the way it reads a redis-server's.
//
//	floor -replicaof 127.0.0.1:6379 -port 7000 -dir /tmp/floor -fsync
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis-relay/redis-relay/replstream"
)

func main() {
	master := flag.String("replicaof", "", "master host:port")
	bind := flag.String("bind", "127.0.0.1", "status listen address")
	port := flag.Int("port", 0, "status port (PING, INFO); also sent to the master as REPLCONF listening-port")
	dir := flag.String("dir", ".", "directory of the stream file")
	ring := flag.Int("ring", 64<<20, "memory ring bytes")
	chunk := flag.Int("chunk", 256<<10, "socket read size")
	fsync := flag.Bool("fsync", false, "fsync the stream file once a second")
	write := flag.Bool("write", true, "write each chunk to the stream file (false: ring only, to separate the costs)")
	flag.Parse()
	if *master == "" || *port <= 0 || *ring <= 0 || *chunk <= 0 {
		fmt.Fprintln(os.Stderr, "floor: -replicaof, -port, -ring and -chunk are required and positive")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, *master, net.JoinHostPort(*bind, strconv.Itoa(*port)), *port, *dir, *ring, *chunk, *fsync, *write); err != nil && ctx.Err() == nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}

// state is what the status port reports; the stream loop is its only writer.
type state struct {
	offset atomic.Int64 // master_repl_offset of the last byte received
	up     atomic.Bool  // link up and past the snapshot
}

func run(ctx context.Context, master, listen string, port int, dir string, ringSize, chunk int, fsync, write bool) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	var st state
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() {
		defer wg.Done()
		serveStatus(ctx, ln, &st)
	}()
	stopLn := context.AfterFunc(ctx, func() { ln.Close() })
	defer stopLn()

	f, err := os.OpenFile(filepath.Join(dir, "stream.bin"), os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	if fsync {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					if err := f.Sync(); err != nil {
						fmt.Fprintln(os.Stderr, "floor: fsync:", err)
					}
				}
			}
		}()
	}

	l := &link{st: &st, file: f, write: write, ring: make([]byte, ringSize), buf: make([]byte, chunk), port: port}
	for ctx.Err() == nil {
		err := l.once(ctx, master)
		st.up.Store(false)
		if ctx.Err() != nil {
			return nil
		}
		fmt.Fprintf(os.Stderr, "%s floor: link lost at offset %d: %v\n", time.Now().Format("15:04:05.000"), st.offset.Load(), err)
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

// link is the replica side of one master; it survives reconnections.
type link struct {
	st     *state
	file   *os.File
	write  bool
	ring   []byte
	buf    []byte
	port   int
	replid string // empty until the first FULLRESYNC
	base   int64  // master offset of the file's byte 0, minus one
}

// once runs one connection: handshake, PSYNC, snapshot if any, stream.
func (l *link) once(ctx context.Context, master string) error {
	conn, err := (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, "tcp", master)
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	br := bufio.NewReaderSize(conn, 64<<10)
	for _, cmd := range [][]string{
		{"PING"},
		{"REPLCONF", "listening-port", strconv.Itoa(l.port)},
		{"REPLCONF", "capa", "eof", "capa", "psync2"},
	} {
		if _, err := conn.Write(resp(cmd...)); err != nil {
			return err
		}
		line, err := replstream.ReadLine(br, 4096)
		if err != nil {
			return fmt.Errorf("%s: %w", cmd[0], err)
		}
		if len(line) == 0 || line[0] != '+' {
			return fmt.Errorf("%s: %q", strings.Join(cmd, " "), line)
		}
	}
	psync := []string{"PSYNC", "?", "-1"}
	if l.replid != "" {
		psync = []string{"PSYNC", l.replid, strconv.FormatInt(l.st.offset.Load()+1, 10)}
	}
	if _, err := conn.Write(resp(psync...)); err != nil {
		return err
	}
	var reply []byte
	for len(reply) == 0 { // newlines are the master's keepalives
		if reply, err = replstream.ReadLine(br, 4096); err != nil {
			return fmt.Errorf("psync: %w", err)
		}
	}
	f := strings.Fields(string(reply))
	switch {
	case len(f) == 3 && f[0] == "+FULLRESYNC":
		off, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			return fmt.Errorf("psync: %q", reply)
		}
		if err := skipSnapshot(br); err != nil {
			return err
		}
		l.replid, l.base = f[1], off
		l.st.offset.Store(off)
	case len(f) > 0 && f[0] == "+CONTINUE":
		if len(f) == 2 {
			l.replid = f[1]
		}
	default:
		return fmt.Errorf("psync: %q", reply)
	}
	l.st.up.Store(true)

	// REPLCONF ACK once a second, beside the read loop.
	done := make(chan struct{})
	var ackWG sync.WaitGroup
	ackWG.Add(1)
	go func() {
		defer ackWG.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if _, err := conn.Write(resp("REPLCONF", "ACK", strconv.FormatInt(l.st.offset.Load(), 10))); err != nil {
					return
				}
			}
		}
	}()
	defer func() {
		close(done)
		ackWG.Wait()
	}()

	// The loop the relay is measured against. The bufio.Reader hands out
	// what it still holds, then reads the socket straight into buf.
	for {
		n, err := br.Read(l.buf)
		if n > 0 {
			off := l.st.offset.Load() // offset of the last byte before this chunk
			p := l.buf[:n]
			if l.write {
				if _, werr := l.file.WriteAt(p, off-l.base); werr != nil {
					return fmt.Errorf("write stream file: %w", werr)
				}
			}
			r := int((off + 1) % int64(len(l.ring)))
			c := copy(l.ring[r:], p)
			copy(l.ring, p[c:])
			l.st.offset.Store(off + int64(n))
		}
		if err != nil {
			return err
		}
	}
}

// skipSnapshot reads the RDB transfer that follows +FULLRESYNC, in either
// form ($<len> or $EOF:<mark>), and discards it.
func skipSnapshot(br *bufio.Reader) error {
	for {
		line, err := replstream.ReadLine(br, 4096)
		if err != nil {
			return fmt.Errorf("snapshot preamble: %w", err)
		}
		p, keepalive, err := replstream.ParsePayloadLine(line)
		if err != nil {
			return err
		}
		if keepalive {
			continue
		}
		if _, err := replstream.CopyPayload(io.Discard, br, p); err != nil {
			return fmt.Errorf("snapshot: %w", err)
		}
		return nil
	}
}

func resp(args ...string) []byte {
	b := fmt.Appendf(nil, "*%d\r\n", len(args))
	for _, a := range args {
		b = fmt.Appendf(b, "$%d\r\n%s\r\n", len(a), a)
	}
	return b
}

// serveStatus answers PING and INFO on ln until it is closed.
func serveStatus(ctx context.Context, ln net.Listener, st *state) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			stop := context.AfterFunc(ctx, func() { c.Close() })
			defer stop()
			br := bufio.NewReader(c)
			for {
				args, err := readCommand(br)
				if err != nil {
					return
				}
				var out string
				switch strings.ToUpper(args[0]) {
				case "PING":
					out = "+PONG\r\n"
				case "INFO":
					up := st.up.Load()
					link, syncing := "down", 0
					if up {
						link = "up"
					} else if st.offset.Load() == 0 {
						syncing = 1
					}
					body := fmt.Sprintf("# Server\r\nprocess_id:%d\r\n\r\n# Replication\r\nrole:slave\r\nmaster_link_status:%s\r\nmaster_sync_in_progress:%d\r\nslave_repl_offset:%d\r\nmaster_repl_offset:%d\r\n",
						os.Getpid(), link, syncing, st.offset.Load(), st.offset.Load())
					out = fmt.Sprintf("$%d\r\n%s\r\n", len(body), body)
				default:
					out = "-ERR unknown command\r\n"
				}
				if _, err := io.WriteString(c, out); err != nil {
					return
				}
			}
		}()
	}
}

var errProtocol = errors.New("floor: protocol error")

// readCommand reads one RESP array of bulk strings (what clients send).
func readCommand(br *bufio.Reader) ([]string, error) {
	line, err := replstream.ReadLine(br, 1024)
	if err != nil {
		return nil, err
	}
	if len(line) < 2 || line[0] != '*' {
		return nil, errProtocol
	}
	n, err := strconv.Atoi(string(line[1:]))
	if err != nil || n < 1 || n > 64 {
		return nil, errProtocol
	}
	args := make([]string, n)
	for i := range args {
		line, err := replstream.ReadLine(br, 1024)
		if err != nil {
			return nil, err
		}
		if len(line) < 2 || line[0] != '$' {
			return nil, errProtocol
		}
		size, err := strconv.Atoi(string(line[1:]))
		if err != nil || size < 0 || size > 1<<16 {
			return nil, errProtocol
		}
		b := make([]byte, size+2)
		if _, err := io.ReadFull(br, b); err != nil {
			return nil, err
		}
		args[i] = string(b[:size])
	}
	return args, nil
}
