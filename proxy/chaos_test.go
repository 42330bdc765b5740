package proxy

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-relay/redis-relay/internal/redistest"
)

// The chaos tests re-point nodes at random under a write load, as Redis's
// own PSYNC2 test does for replicas of replicas: a master, two relays and
// three stock replicas; every 1-3 s one node moves to another upstream.
// Stock replicas move between the master and the relays, a relay moves
// between the master and the other relay. At the end every node has the
// master's data and offset, and nobody served or took a full sync after
// the first ones of the setup.
//
// A move is only made when Redis itself would serve it partially: the new
// upstream must know the moving node's replication ID (as its own, or as
// its previous one up to the offset of the switch) and hold every byte
// the node holds; otherwise Redis answers the PSYNC with a full sync. An
// upstream the node already replicates through gets every byte and every
// change of ID first; any other (a sibling, the other relay, a relay not
// yet told of a failover) may be behind it. For those the master's writes
// are paused (CLIENT PAUSE WRITE, which also stops its expiry) until the
// new upstream would continue the node, the node is re-pointed and the
// writes resume: the pause lasts as long as that catch-up, not the move.
// TestChaosRelayKills also makes half of those moves under load: a relay
// behind the node, unlike Redis, waits for its upstream (wait-ahead).
//
//	go test -run TestChaos ./proxy/ -chaos.seed=7 -chaos.duration=60s -v
//
// The seed picks the moves (their timing depends on the machine, so a
// seed replays the same moves, not the same interleaving with the load).

var (
	chaosSeed     = flag.Uint64("chaos.seed", 0, "seed of the chaos tests' moves; 0: a new one each run (it is logged)")
	chaosDuration = flag.Duration("chaos.duration", 8*time.Second, "how long each chaos test moves nodes under write load")
)

// Every stock server keeps a backlog that covers a relay restart or a
// move under this load; the relays never refresh their snapshot, which
// would count as a full sync on the master.
var (
	chaosRedisArgs = []string{"--repl-backlog-size", "64mb"}
	chaosRelayEnv  = []string{"REDIS_RELAY_CHILD_REFRESH_RATIO=-1"}
)

// chaosNode is one server of the chaos tests: a stock redis-server or a
// relay process.
type chaosNode struct {
	name   string
	srv    *redistest.Server
	relay  *relayProc
	parent *chaosNode // the upstream it was last pointed at; nil for the master

	// A relay's INFO counters restart at zero with its process; the
	// counts of its earlier runs are added here before each kill.
	runs map[string]int64
}

func (n *chaosNode) addr() string {
	if n.relay != nil {
		return n.relay.Addr()
	}
	return n.srv.Addr()
}

func (n *chaosNode) hostPort() (string, string) {
	if n.relay != nil {
		return n.relay.HostPort()
	}
	return n.srv.HostPort()
}

func (n *chaosNode) client() *redis.Client {
	if n.relay != nil {
		return n.relay.client
	}
	return n.srv.Client()
}

func (n *chaosNode) label() string {
	if n.parent == nil {
		return n.name + " (master)"
	}
	return n.name + " under " + n.parent.name
}

// info reads one section of INFO.
func (n *chaosNode) info(section string) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	text, err := n.client().Info(ctx, section).Result()
	if err != nil {
		return nil, fmt.Errorf("%s INFO: %w", n.name, err)
	}
	return redistest.ParseInfo(text), nil
}

// chaosHistory is where a node stands in the replication history, as
// INFO replication shows it.
type chaosHistory struct {
	replid, replid2 string
	// master_repl_offset: for a stock replica the offset of the last
	// command it applied, which it asks for (+1) in its next PSYNC; for a
	// relay the end of its log.
	offset int64
	second int64 // second_repl_offset: replid2 is valid up to here
}

func (n *chaosNode) history() (chaosHistory, error) {
	info, err := n.info("replication")
	if err != nil {
		return chaosHistory{}, err
	}
	h := chaosHistory{replid: info["master_replid"], replid2: info["master_replid2"]}
	off, err1 := strconv.ParseInt(info["master_repl_offset"], 10, 64)
	second, err2 := strconv.ParseInt(info["second_repl_offset"], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return h, fmt.Errorf("%s INFO replication: %w", n.name, err)
	}
	h.offset, h.second = off, second
	return h, nil
}

// continues reports whether a server at u would answer +CONTINUE to the
// PSYNC of a node at n, by Redis's rule: n's replication ID is u's, or
// u's previous one and n's offset is within it, and u holds every byte n
// holds. (The other half of the rule, that u's backlog still reaches back
// to n's offset, holds here: every backlog covers the whole test.)
func (u chaosHistory) continues(n chaosHistory) bool {
	psync := n.offset + 1
	known := u.replid == n.replid || u.replid2 == n.replid && psync <= u.second
	return known && psync <= u.offset+1
}

// wouldContinue reads both nodes and tells whether u would continue n.
func wouldContinue(n, u *chaosNode) (bool, error) {
	nh, err1 := n.history()
	uh, err2 := u.history()
	if err := errors.Join(err1, err2); err != nil {
		return false, err
	}
	return uh.continues(nh), nil
}

// stat is an INFO counter, for a relay summed over its runs.
func (n *chaosNode) stat(t *testing.T, field string) int64 {
	t.Helper()
	info, err := n.info("everything")
	if err != nil {
		t.Fatal(err)
	}
	v, err := strconv.ParseInt(info[field], 10, 64)
	if err != nil {
		t.Fatalf("%s INFO %s = %q", n.name, field, info[field])
	}
	return v + n.runs[field]
}

// log is everything the node has logged, over all its runs.
func (n *chaosNode) log() string {
	var path string
	if n.relay != nil {
		path = n.relay.log.Name()
	} else {
		path = n.srv.LogPath
	}
	b, _ := os.ReadFile(path)
	return string(b)
}

// chaosFullSyncs counts full syncs in a node's log: for a relay those it
// served and those it took from its upstream, for a stock server those it
// took as a replica (the ones it served are its INFO sync_full).
type chaosFullSyncs struct{ served, taken int }

func (n *chaosNode) fullSyncs() chaosFullSyncs {
	log := n.log()
	if n.relay != nil {
		return chaosFullSyncs{
			served: strings.Count(log, `msg="full resync" `),
			taken:  strings.Count(log, `msg="full resync from upstream"`),
		}
	}
	return chaosFullSyncs{taken: strings.Count(log, "Full resync from master")}
}

// chaosStats are the counters that must not move after the setup.
var chaosStats = []string{"sync_full", "sync_partial_err"}

type chaos struct {
	t      *testing.T
	opts   chaosOptions
	rng    *rand.Rand
	start  time.Time
	master *chaosNode
	stock  []*chaosNode // stock servers, the master among them
	relays []*chaosNode
	load   *chaosLoad

	moves, pausedMoves, waitAheadMoves, skipped, kills int
	longestPause                                       time.Duration
	batches, bytes                                     int64 // written by the loads stopped so far
}

func (c *chaos) nodes() []*chaosNode { return append(append([]*chaosNode{}, c.stock...), c.relays...) }

func (c *chaos) logf(format string, args ...any) {
	c.t.Helper()
	c.t.Logf("%6.1fs "+format, append([]any{time.Since(c.start).Seconds()}, args...)...)
}

// setup starts the master, two relays and three stock replicas, each
// under a random upstream, and waits until all of them are in sync.
func (c *chaos) setup() {
	t := c.t
	m := &chaosNode{name: "M", srv: redistest.Start(t, chaosRedisArgs...)}
	populate(t, m.srv, 0, 5000)
	writeKeys(t, m.srv, 1, 200)
	c.master, c.stock = m, []*chaosNode{m}
	for i := 1; i <= 2; i++ {
		r := &chaosNode{name: fmt.Sprintf("R%d", i), runs: map[string]int64{}}
		r.parent = c.pick(append([]*chaosNode{m}, c.relays...))
		r.relay = startRelayProcess(t, r.parent.addr(), chaosRelayEnv...)
		c.relays = append(c.relays, r)
	}
	for i := 1; i <= 3; i++ {
		s := &chaosNode{name: fmt.Sprintf("S%d", i)}
		s.parent = c.pick(append([]*chaosNode{m}, c.relays...))
		s.srv = replicaOf(t, s.parent.hostPort, chaosRedisArgs...)
		c.stock = append(c.stock, s)
	}
	for _, n := range c.nodes() {
		if n.parent != nil {
			c.logf("setup: %s (%s) under %s", n.name, n.addr(), n.parent.name)
		} else {
			c.logf("setup: %s (%s) is the master", n.name, n.addr())
		}
	}
	c.converge(60 * time.Second)
}

func (c *chaos) pick(from []*chaosNode) *chaosNode { return from[c.rng.IntN(len(from))] }

// below reports whether a replicates from b, directly or through others.
func below(a, b *chaosNode) bool {
	for p := a.parent; p != nil; p = p.parent {
		if p == b {
			return true
		}
	}
	return false
}

// targets are the upstreams n may move to: the master or a relay, but not
// n itself, its current upstream, or a relay that replicates from n (a
// cycle, which no byte from the master would reach). Stock replicas are
// never upstreams, so no relay goes under a replica of its own.
func (c *chaos) targets(n *chaosNode) []*chaosNode {
	var out []*chaosNode
	for _, u := range append([]*chaosNode{c.master}, c.relays...) {
		if u != n && u != n.parent && !below(u, n) {
			out = append(out, u)
		}
	}
	return out
}

// randomMove moves one node, other than the master, to a random upstream.
// It returns the relays the move involved (as the node or its new upstream).
func (c *chaos) randomMove() (involved []*chaosNode) {
	var movers []*chaosNode
	for _, n := range c.nodes() {
		if n != c.master {
			movers = append(movers, n)
		}
	}
	n := c.pick(movers)
	to := c.targets(n)
	if len(to) == 0 {
		return nil
	}
	u := c.pick(to)
	c.move(n, u)
	for _, r := range []*chaosNode{n, u} {
		if r.relay != nil {
			involved = append(involved, r)
		}
	}
	return involved
}

// move points n at upstream u, pausing the master's writes first when u
// might not continue n (see the top of this file).
func (c *chaos) move(n, u *chaosNode) {
	t := c.t
	t.Helper()
	c.moves++
	from := n.parent.name
	// An upstream n replicates through gets every byte and every change of
	// replication ID before n: if it continues n now, it still will when n
	// asks. Any other may fall behind n (or n take a new ID first) at any
	// moment under load.
	ok, err := wouldContinue(n, u)
	if err != nil {
		t.Fatal(err)
	}
	if below(n, u) && ok {
		c.replicaof(n, u)
		n.parent = u
		c.logf("move %d: %s from %s to %s (under load)", c.moves, n.name, from, u.name)
		return
	}
	if c.opts.waitAhead && u.relay != nil && c.rng.IntN(2) == 0 {
		if same, err := sameID(n, u); err != nil {
			t.Fatal(err)
		} else if same {
			c.replicaof(n, u)
			n.parent = u
			c.waitAheadMoves++
			c.logf("move %d: %s from %s to %s (under load, the relay may have to wait ahead)", c.moves, n.name, from, u.name)
			return
		}
	}
	paused, ok := c.pausedMove(n, u)
	if !ok {
		c.skipped++
		c.logf("move %d: %s -> %s skipped: %s could not continue %s after %v with the master paused", c.moves, n.name, u.name, u.name, n.name, paused.Round(time.Millisecond))
		return
	}
	n.parent = u
	c.logf("move %d: %s from %s to %s (master paused %v)", c.moves, n.name, from, u.name, paused.Round(time.Millisecond))
}

// sameID reports whether n and u are on the same replication ID, the
// condition for a relay to wait for bytes a replica has and it has not
// yet (wait-ahead) rather than answer with a full sync.
func sameID(n, u *chaosNode) (bool, error) {
	nh, err1 := n.history()
	uh, err2 := u.history()
	return nh.replid == uh.replid, errors.Join(err1, err2)
}

// pausedMove pauses the master's writes, waits until n has all of them
// (its offset and replication ID can no longer change) and u would
// continue n, re-points n and lets the writes go on. ok is false when
// that did not happen in time; n is left where it was then.
func (c *chaos) pausedMove(n, u *chaosNode) (paused time.Duration, ok bool) {
	t := c.t
	t.Helper()
	m := c.master.srv
	start := time.Now()
	m.Do(t, "CLIENT", "PAUSE", "15000", "WRITE")
	defer func() {
		m.Do(t, "CLIENT", "UNPAUSE")
		paused = time.Since(start)
		c.pausedMoves++
		c.longestPause = max(c.longestPause, paused)
	}()
	for {
		ok, err := c.settled(n, u)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			break
		}
		if time.Since(start) > 10*time.Second {
			return 0, false
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A relay drops its old link after REPLICAOF has answered; it must not
	// take more of the old upstream's stream once the writes resume. Only
	// a link that streams counts the drop (one waiting to retry does not).
	var streaming bool
	var downs int64
	if n.relay != nil {
		streaming, downs = c.upstreamLink(n)
	}
	c.replicaof(n, u)
	if streaming {
		redistest.Eventually(t, 10*time.Second, func() error {
			if _, d := c.upstreamLink(n); d == downs {
				return fmt.Errorf("relay %s still streams from %s", n.name, n.parent.name)
			}
			return nil
		})
	}
	return 0, true
}

// settled reports whether n has caught up with the master's replication
// ID and offset, so that nothing moves it any more while the master is
// paused, and u would continue it. (A node behind may still change ID:
// after a failover, from an upstream that has just learned the new one.)
func (c *chaos) settled(n, u *chaosNode) (bool, error) {
	mh, err1 := c.master.history()
	nh, err2 := n.history()
	uh, err3 := u.history()
	if err := errors.Join(err1, err2, err3); err != nil {
		return false, err
	}
	return nh.replid == mh.replid && nh.offset == mh.offset && uh.continues(nh), nil
}

// upstreamLink tells whether a relay's upstream link streams, and how
// many times it went down because the relay was re-pointed, in the
// relay's current run.
func (c *chaos) upstreamLink(n *chaosNode) (streaming bool, repointed int64) {
	info, err := n.info("relay")
	if err != nil {
		c.t.Fatal(err)
	}
	repointed, _ = strconv.ParseInt(info["upstream_link_downs_repointed"], 10, 64)
	return info["upstream_link_state"] == LinkConnected, repointed
}

func (c *chaos) replicaof(n, u *chaosNode) {
	c.t.Helper()
	h, p := u.hostPort()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.client().Do(ctx, "REPLICAOF", h, p).Err(); err != nil {
		c.t.Fatalf("%s REPLICAOF %s %s: %v", n.name, h, p, err)
	}
}

// killRelay SIGKILLs a relay and starts it again after a random pause, on
// the same data dir and port and with its current upstream (as a
// supervisor restarts it with the config last written).
func (c *chaos) killRelay(r *chaosNode) {
	for _, field := range append([]string{"sync_partial_ok"}, chaosStats...) {
		r.runs[field] = r.stat(c.t, field)
	}
	r.relay.master = r.parent.addr()
	r.relay.Kill()
	down := time.Duration(100+c.rng.IntN(1900)) * time.Millisecond
	c.kills++
	c.logf("kill %d: %s (under %s) SIGKILLed, down for %v", c.kills, r.name, r.parent.name, down)
	time.Sleep(down)
	r.relay.start()
}

// failover promotes a random stock replica, as an operator does: the old
// master's writes are paused until every node holds all of them (so that
// everyone can continue from the promoted replica's second replication
// ID), the replica is promoted, the old master becomes its replica, the
// load moves to the new master and every other node is re-pointed.
func (c *chaos) failover() {
	t := c.t
	c.stopLoad()
	old := c.master
	var spares []*chaosNode
	for _, s := range c.stock {
		if s != old {
			spares = append(spares, s)
		}
	}
	p := c.pick(spares)
	// No PING from the old master either: one sent after the promotion
	// would put it ahead of the new master, which Redis answers with a full
	// sync ("Requested offset for second ID was ...").
	old.srv.Do(t, "CONFIG", "SET", "repl-ping-replica-period", "3600")
	old.srv.Do(t, "CLIENT", "PAUSE", "30000", "WRITE")
	want, err := old.history()
	if err != nil {
		t.Fatal(err)
	}
	redistest.Eventually(t, 30*time.Second, func() error {
		for _, n := range c.nodes() {
			h, err := n.history()
			if err != nil {
				return err
			}
			if h.replid != want.replid || h.offset != want.offset {
				return fmt.Errorf("%s at %s:%d, the master at %s:%d", n.name, h.replid, h.offset, want.replid, want.offset)
			}
		}
		return nil
	})
	p.srv.Do(t, "REPLICAOF", "NO", "ONE")
	c.replicaof(old, p)
	old.srv.Do(t, "CLIENT", "UNPAUSE")
	old.srv.Do(t, "CONFIG", "SET", "repl-ping-replica-period", "10")
	c.logf("failover at offset %d: %s promoted, %s now its replica", want.offset, p.name, old.name)
	old.parent, p.parent, c.master = p, nil, p
	c.load = startChaosLoad(p.srv, c.rng.Uint64())

	nodes := c.nodes()
	c.rng.Shuffle(len(nodes), func(i, j int) { nodes[i], nodes[j] = nodes[j], nodes[i] })
	for _, n := range nodes {
		if n == p || n == old {
			continue
		}
		if to := c.targets(n); len(to) > 0 {
			c.move(n, c.pick(to))
		}
	}
}

// converge waits until every node has the master's replication ID and
// offset with its link up, and every stock server the master's digest.
func (c *chaos) converge(timeout time.Duration) {
	c.t.Helper()
	redistest.Eventually(c.t, timeout, func() error {
		mi, err := c.master.info("replication")
		if err != nil {
			return err
		}
		for _, n := range c.nodes() {
			if n == c.master {
				continue
			}
			info, err := n.info("replication")
			if err != nil {
				return err
			}
			if info["master_link_status"] != "up" || info["master_replid"] != mi["master_replid"] || info["master_repl_offset"] != mi["master_repl_offset"] {
				return fmt.Errorf("%s link %s at %s:%s, the master at %s:%s", n.name, info["master_link_status"],
					info["master_replid"], info["master_repl_offset"], mi["master_replid"], mi["master_repl_offset"])
			}
		}
		var servers []*redistest.Server
		for _, s := range c.stock {
			servers = append(servers, s.srv)
		}
		return redistest.SameDigest(servers...)
	})
}

// chaosCounts is what must not move after the setup, per node.
type chaosCounts map[*chaosNode]map[string]int64

func (c *chaos) counts() chaosCounts {
	out := chaosCounts{}
	for _, n := range c.nodes() {
		m := map[string]int64{}
		for _, field := range chaosStats {
			m[field] = n.stat(c.t, field)
		}
		f := n.fullSyncs()
		m["log full served"], m["log full taken"] = int64(f.served), int64(f.taken)
		out[n] = m
	}
	return out
}

type chaosOptions struct {
	variant  uint64 // each test draws its own moves from the seed
	failover bool   // promote a stock replica half way
	kills    bool   // SIGKILL and restart relays at random moments
	// Move half the nodes that a relay might be behind under load all the
	// same: a relay, unlike Redis, waits for its upstream to bring the
	// bytes such a node holds and then continues it (wait-ahead).
	waitAhead bool
}

func runChaos(t *testing.T, o chaosOptions) {
	seed := *chaosSeed
	if seed == 0 {
		seed = rand.Uint64() >> 1
	}
	t.Logf("chaos seed %d (replay the moves with -chaos.seed=%d), %v of moves", seed, seed, *chaosDuration)
	c := &chaos{t: t, opts: o, rng: rand.New(rand.NewPCG(seed, o.variant)), start: time.Now()}
	c.setup()
	before := c.counts()
	c.load = startChaosLoad(c.master.srv, c.rng.Uint64())
	c.logf("setup done, load started")

	// A step every 1-3 s: a move, or a relay kill (at least one), or
	// once half the time has passed the failover.
	end := time.Now().Add(*chaosDuration)
	half := time.Now().Add(*chaosDuration / 2)
	failedOver := false
	for {
		step := time.Duration(1000+c.rng.IntN(2000)) * time.Millisecond
		if time.Until(end) < step {
			break
		}
		time.Sleep(step)
		switch {
		case o.failover && !failedOver && time.Now().After(half):
			c.failover()
			failedOver = true
		case o.kills && (c.rng.IntN(3) == 0 || c.kills == 0 && time.Now().After(half)):
			c.killRelay(c.pick(c.relays))
		default:
			involved := c.randomMove()
			// Now and then a relay dies while it resyncs with its new
			// upstream or serves the node that just moved to it.
			if o.kills && len(involved) > 0 && c.rng.IntN(3) == 0 {
				time.Sleep(time.Duration(c.rng.IntN(300)) * time.Millisecond)
				c.killRelay(c.pick(involved))
			}
		}
	}
	c.stopLoad()
	c.converge(90 * time.Second)
	after := c.counts()

	c.logf("%d moves (%d with the master paused, longest %v; %d to a relay maybe behind; %d skipped), %d relay kills; load: %d batches, %d MB",
		c.moves, c.pausedMoves, c.longestPause.Round(time.Millisecond), c.waitAheadMoves, c.skipped, c.kills, c.batches, c.bytes>>20)
	for _, n := range c.nodes() {
		line := n.label() + ":"
		for _, k := range []string{"sync_full", "sync_partial_err", "log full served", "log full taken"} {
			line += fmt.Sprintf(" %s %d", k, after[n][k])
			if after[n][k] != before[n][k] {
				line += fmt.Sprintf(" (%d after setup)", before[n][k])
				t.Errorf("%s: %s went from %d to %d after the setup", n.name, k, before[n][k], after[n][k])
			}
		}
		line += fmt.Sprintf(", sync_partial_ok %d", n.stat(t, "sync_partial_ok"))
		if n.relay != nil {
			line += fmt.Sprintf(", replicas waited ahead %d", strings.Count(n.log(), `msg="replica is ahead of the relay`))
		}
		t.Log(line)
	}
}

func TestChaosRepoint(t *testing.T) { runChaos(t, chaosOptions{variant: 1}) }

func TestChaosFailover(t *testing.T) { runChaos(t, chaosOptions{variant: 2, failover: true}) }

// TestChaosRelayKills goes beyond what Redis can do: relays die and come
// back on their data dir, and nodes move under a relay that may be behind
// them.
func TestChaosRelayKills(t *testing.T) {
	t.Parallel()
	runChaos(t, chaosOptions{variant: 3, kills: true, waitAhead: true})
}

// chaosLoad writes to a master until stopped, from two writers: batches of
// SETs of 1-40 KB, INCR, LPUSH, HSET, EXPIRE on small and large keys and
// DEL, in three DBs, one batch in four as MULTI/EXEC.
type chaosLoad struct {
	cancel         context.CancelFunc
	wg             sync.WaitGroup
	mu             sync.Mutex
	err            error
	batches, bytes atomic.Int64
}

func startChaosLoad(s *redistest.Server, seed uint64) *chaosLoad {
	ctx, cancel := context.WithCancel(context.Background())
	g := &chaosLoad{cancel: cancel}
	for w := range 2 {
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			if err := g.write(ctx, s, rand.New(rand.NewPCG(seed, uint64(w)))); err != nil && ctx.Err() == nil {
				g.mu.Lock()
				g.err = errors.Join(g.err, err)
				g.mu.Unlock()
			}
		}()
	}
	return g
}

func (g *chaosLoad) write(ctx context.Context, s *redistest.Server, rng *rand.Rand) error {
	var clients []*redis.Client
	for db := range 3 {
		c := redis.NewClient(&redis.Options{
			Addr: s.Addr(), DB: db, Protocol: 2, DisableIdentity: true,
			MaxRetries: -1, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second,
		})
		defer c.Close()
		clients = append(clients, c)
	}
	for ctx.Err() == nil {
		c := clients[rng.IntN(len(clients))]
		var p redis.Pipeliner = c.Pipeline()
		if rng.IntN(4) == 0 {
			p = c.TxPipeline()
		}
		var n int64
		for range 8 {
			k := rng.IntN(300)
			switch rng.IntN(8) {
			case 0, 1:
				v := bigValueSpace[:1<<10+rng.IntN(39<<10)]
				p.Set(ctx, fmt.Sprintf("chaos:v:%d", k), v, 0)
				n += int64(len(v))
			case 2:
				p.Incr(ctx, fmt.Sprintf("chaos:n:%d", k))
			case 3:
				p.LPush(ctx, fmt.Sprintf("chaos:l:%d", k), bigValueSpace[:rng.IntN(2<<10)])
				p.LTrim(ctx, fmt.Sprintf("chaos:l:%d", k), 0, 20)
			case 4:
				p.HSet(ctx, fmt.Sprintf("chaos:h:%d", k), fmt.Sprintf("f%d", rng.IntN(20)), rng.Int64())
			case 5:
				p.Set(ctx, fmt.Sprintf("chaos:e:%d", k), rng.Int64(), 0)
				p.Expire(ctx, fmt.Sprintf("chaos:e:%d", k), time.Duration(1+rng.IntN(2))*time.Second)
			case 6:
				p.Expire(ctx, fmt.Sprintf("chaos:v:%d", k), time.Duration(1+rng.IntN(2))*time.Second)
			case 7:
				p.Del(ctx, fmt.Sprintf("chaos:v:%d", k), fmt.Sprintf("chaos:n:%d", k))
			}
		}
		if _, err := p.Exec(ctx); err != nil {
			return err
		}
		g.batches.Add(1)
		g.bytes.Add(n)
		select {
		case <-time.After(10 * time.Millisecond):
		case <-ctx.Done():
		}
	}
	return nil
}

// stopLoad ends the load and fails the test if a write failed.
func (c *chaos) stopLoad() {
	c.t.Helper()
	g := c.load
	g.cancel()
	g.wg.Wait()
	c.batches += g.batches.Load()
	c.bytes += g.bytes.Load()
	if g.err != nil {
		c.t.Fatalf("chaos load: %v", g.err)
	}
}
