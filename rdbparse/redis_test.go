package rdbparse

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis-relay/redis-relay/internal/redistest"
)

// client connects a raw RESP client to srv for the rest of the test.
func client(tb testing.TB, srv *redistest.Server) *respConn {
	tb.Helper()
	c, err := dialRESP(srv.Addr())
	if err != nil {
		tb.Fatalf("connect to redis: %v", err)
	}
	tb.Cleanup(c.close)
	return c
}

// respConn is a minimal RESP2 client: enough to drive a test server.
type respConn struct {
	nc net.Conn
	br *bufio.Reader
}

type respError string

func (e respError) Error() string { return string(e) }

func dialRESP(addr string) (*respConn, error) {
	nc, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, err
	}
	return &respConn{nc: nc, br: bufio.NewReaderSize(nc, 64<<10)}, nil
}

func (c *respConn) close() { _ = c.nc.Close() }

func (c *respConn) send(args ...any) error {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		s := fmt.Sprint(a)
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(s), s)
	}
	_, err := io.WriteString(c.nc, b.String())
	return err
}

// do sends one command and returns its reply: a string, an int64, nil, a
// []any, or a respError.
func (c *respConn) do(args ...any) (any, error) {
	if err := c.send(args...); err != nil {
		return nil, err
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(60 * time.Second))
	v, err := c.reply()
	if err != nil {
		return nil, err
	}
	if e, ok := v.(respError); ok {
		return nil, e
	}
	return v, nil
}

// must runs a command and fails the test on an error reply.
func (c *respConn) must(tb testing.TB, args ...any) any {
	tb.Helper()
	v, err := c.do(args...)
	if err != nil {
		tb.Fatalf("%v: %v", args, err)
	}
	return v
}

func (c *respConn) line() (string, error) {
	s, err := c.br.ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(s, "\r\n"), nil
}

func (c *respConn) reply() (any, error) {
	s, err := c.line()
	if err != nil {
		return nil, err
	}
	if s == "" {
		return nil, errors.New("empty reply line")
	}
	switch s[0] {
	case '+':
		return s[1:], nil
	case '-':
		return respError(s[1:]), nil
	case ':':
		return strconv.ParseInt(s[1:], 10, 64)
	case '$':
		n, err := strconv.Atoi(s[1:])
		if err != nil || n < 0 {
			return nil, err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(c.br, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(s[1:])
		if err != nil || n < 0 {
			return nil, err
		}
		out := make([]any, n)
		for i := range out {
			if out[i], err = c.reply(); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("unexpected reply %q", s)
}

// info returns the fields of an INFO section.
func (c *respConn) info(tb testing.TB, section string) map[string]string {
	tb.Helper()
	return redistest.ParseInfo(c.must(tb, "INFO", section).(string))
}

// keyspace returns keys and expires per database from INFO keyspace.
func (c *respConn) keyspace(tb testing.TB) map[int][2]int64 {
	tb.Helper()
	out := map[int][2]int64{}
	for k, v := range c.info(tb, "keyspace") {
		db, err := strconv.Atoi(strings.TrimPrefix(k, "db"))
		if err != nil {
			continue
		}
		var keys, expires int64
		for _, kv := range strings.Split(v, ",") {
			name, num, _ := strings.Cut(kv, "=")
			n, _ := strconv.ParseInt(num, 10, 64)
			switch name {
			case "keys":
				keys = n
			case "expires":
				expires = n
			}
		}
		out[db] = [2]int64{keys, expires}
	}
	return out
}

const testLibrary = "#!lua name=mylib\nredis.register_function('f', function() return 1 end)"

// populate writes keys of every type and encoding into databases 0 and 3,
// plus one function library. With big set it adds DEBUG POPULATE 10000 and
// larger collections. It returns how many keys of each type were written.
func populate(tb testing.TB, c *respConn, big bool) map[string]int64 {
	tb.Helper()
	types := map[string]int64{}
	// add runs a command that creates one key of type typ.
	add := func(typ string, args ...any) {
		tb.Helper()
		c.must(tb, args...)
		types[typ]++
	}
	scale := 1
	if big {
		scale = 10
	}
	c.must(tb, "SELECT", 0)
	// Strings: int-encoded, raw, long and compressible, long and random.
	for k, v := range map[string]string{
		"str:int": "12345", "str:neg": "-7", "str:int16": "30000", "str:int32": "2000000000",
		"str:bigint": "9000000000", "str:raw": "hello world",
		"str:long": strings.Repeat("abcdefgh", 200*scale), "str:rand": pseudoRandom(300),
	} {
		add("string", "SET", k, v)
	}
	add("string", "SET", "exp:str", "v", "PX", 3600000)
	add("string", "SET", strings.Repeat("long-key-", 10), "x")

	// Lists: one listpack node, many nodes, and a plain node.
	add("list", "RPUSH", "list:small", "a", "b", 1, 2, -300, 70000)
	args := []any{"RPUSH", "list:large"}
	for i := 0; i < 200*scale; i++ {
		args = append(args, fmt.Sprintf("item-%04d-%s", i, strings.Repeat("x", 20)))
	}
	add("list", args...)
	add("list", "RPUSH", "list:plain", strings.Repeat("p", 9000), "tail")
	c.must(tb, "EXPIRE", "list:small", 3600)

	// Sets: intset, hashtable of strings, large intset turned hashtable.
	add("set", "SADD", "set:int", 1, 2, 3, -5, 100000, 5000000000)
	add("set", "SADD", "set:str", "a", "b", "c")
	args = []any{"SADD", "set:large"}
	for i := 0; i < 600; i++ {
		args = append(args, i*7)
	}
	add("set", args...)

	// Sorted sets: listpack and skiplist.
	add("zset", "ZADD", "zset:small", 1, "a", 2.5, "b", "-inf", "c")
	args = []any{"ZADD", "zset:large"}
	for i := 0; i < 20*scale+130; i++ {
		args = append(args, float64(i)/3, fmt.Sprintf("member-%d", i))
	}
	add("zset", args...)

	// Hashes: listpack and hashtable.
	add("hash", "HSET", "hash:small", "f1", "v1", "f2", 2)
	args = []any{"HSET", "hash:large"}
	for i := 0; i < 20*scale+130; i++ {
		args = append(args, fmt.Sprintf("field-%d", i), fmt.Sprintf("value-%d", i))
	}
	add("hash", args...)
	c.must(tb, "EXPIRE", "hash:large", 7200)

	// A stream with a deleted entry, entries with other fields, and two
	// consumer groups with pending entries.
	for i := 0; i < 30; i++ {
		c.must(tb, "XADD", "stream:s", "*", "sensor", i, "temp", 20+i)
	}
	c.must(tb, "XADD", "stream:s", "*", "other", "field")
	first := c.must(tb, "XRANGE", "stream:s", "-", "+", "COUNT", 1).([]any)[0].([]any)[0]
	c.must(tb, "XDEL", "stream:s", first)
	c.must(tb, "XGROUP", "CREATE", "stream:s", "g1", "0")
	c.must(tb, "XGROUP", "CREATE", "stream:s", "g2", "$")
	c.must(tb, "XREADGROUP", "GROUP", "g1", "alice", "COUNT", 5, "STREAMS", "stream:s", ">")
	c.must(tb, "XREADGROUP", "GROUP", "g1", "bob", "COUNT", 3, "STREAMS", "stream:s", ">")
	types["stream"]++

	c.must(tb, "FUNCTION", "LOAD", testLibrary)

	if big {
		c.must(tb, "DEBUG", "POPULATE", 10000)
		types["string"] += 10000
	}

	c.must(tb, "SELECT", 3)
	add("string", "SET", "db3:a", 1)
	add("string", "SET", "db3:exp", "v", "EX", 3600)
	add("hash", "HSET", "db3:h", "f", "v")
	add("list", "RPUSH", "db3:l", "x")
	add("stream", "XADD", "db3:s", "*", "a", "b")
	c.must(tb, "SELECT", 0)
	return types
}

// pseudoRandom returns n bytes of deterministic, poorly compressible text.
func pseudoRandom(n int) string {
	b := make([]byte, n)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = 'a' + byte(x%26)
	}
	return string(b)
}

// saveRDB runs SAVE and returns the path of the dump.
func saveRDB(tb testing.TB, srv *redistest.Server, c *respConn) string {
	tb.Helper()
	c.must(tb, "SAVE")
	return filepath.Join(srv.Dir, "dump.rdb")
}
