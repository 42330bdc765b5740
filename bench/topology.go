package main

import (
	"context"
	"fmt"
	"strconv"
	"sync"
)

// topo is one configuration under test: a master, the node in the middle
// (an intermediate redis-server, the relay, or none for direct) and the
// leaf replicas.
type topo struct {
	kind   string
	master *proc
	// upstream is the first relay of a chain (master -> upstream -> middle
	// -> leaves); nil otherwise.
	upstream *proc
	middle   *proc // nil for direct
	leaves   []*proc
}

// isChain reports whether kind is a relay following a relay.
func isChain(kind string) bool { return kind == cfgChain || kind == cfgChainZstd }

// isRelay reports whether the node the leaves follow in kind is a relay.
func isRelay(kind string) bool { return kind == cfgRelay || kind == cfgOld || isChain(kind) }

// serving is the node the leaves replicate from.
func (t *topo) serving() *proc {
	if t.middle != nil {
		return t.middle
	}
	return t.master
}

func (t *topo) stop() {
	var wg sync.WaitGroup
	for _, p := range append([]*proc{t.master, t.upstream, t.middle}, t.leaves...) {
		if p != nil {
			wg.Add(1)
			go func() {
				defer wg.Done()
				p.stop()
			}()
		}
	}
	wg.Wait()
}

// masterArgs are the settings of the master and of the intermediate
// redis-server (both are masters to someone).
func (o *options) masterArgs() []string {
	args := []string{"--repl-diskless-sync-delay", strconv.Itoa(o.disklessDelay)}
	if o.backlog != "" {
		args = append(args, "--repl-backlog-size", o.backlog)
	}
	return args
}

func (o *options) startMaster(ctx context.Context, e *env) (*proc, error) {
	return e.startRedis(ctx, "master", o.masterArgs()...)
}

// startMiddle starts what sits between master and leaves for kind, already
// replicating from master: nothing, an intermediate redis-server, or the
// relay (from -relay-bin, or for old from -old-relay-bin).
func (o *options) startMiddle(ctx context.Context, e *env, kind string, master *proc) (*proc, error) {
	switch kind {
	case cfgDirect:
		return nil, nil
	case cfgIntermediate:
		args := append([]string{"--replicaof", "127.0.0.1", strconv.Itoa(master.port)}, o.masterArgs()...)
		return e.startRedis(ctx, "intermediate", args...)
	case cfgRelay:
		return e.startRelay(ctx, "relay", master.addr(), o.ringBytes)
	case cfgOld:
		return e.startOldRelay(ctx, master.addr(), o.ringBytes)
	}
	return nil, fmt.Errorf("unknown configuration %q", kind)
}

// startChain starts the two relays of a chain configuration, each already
// replicating from the previous node: upstream follows master, middle
// follows upstream, over a zstd-compressed link for chain-zstd (the upstream
// relay serves compression by default) and a plain one for chain.
func (o *options) startChain(ctx context.Context, e *env, kind string, master *proc) (upstream, middle *proc, err error) {
	if !isChain(kind) {
		return nil, nil, fmt.Errorf("not a chain configuration: %q", kind)
	}
	if upstream, err = e.startRelay(ctx, "relay1", master.addr(), o.ringBytes); err != nil {
		return nil, nil, err
	}
	compression := "no"
	if kind == cfgChainZstd {
		compression = "yes"
	}
	if middle, err = e.startRelay(ctx, "relay2", upstream.addr(), o.ringBytes, "--upstream-compression", compression); err != nil {
		upstream.stop()
		return nil, nil, err
	}
	return upstream, middle, nil
}

// startLeaves starts n empty redis-servers, not yet replicating.
func (o *options) startLeaves(ctx context.Context, e *env, n int) ([]*proc, error) {
	var leaves []*proc
	for i := range n {
		p, err := e.startRedis(ctx, fmt.Sprintf("replica%d", i))
		if err != nil {
			for _, l := range leaves {
				l.stop()
			}
			return nil, err
		}
		leaves = append(leaves, p)
	}
	return leaves, nil
}

// attachAll points every leaf at target at once (one goroutine each).
func attachAll(ctx context.Context, leaves []*proc, target *proc) error {
	errs := make([]error, len(leaves))
	var wg sync.WaitGroup
	for i, l := range leaves {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = replicaofProc(ctx, l, target)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// warmTopo starts a full configuration with nLeaves leaves on a master
// holding keys keys of valueSize bytes, and waits until all are in sync.
func (o *options) warmTopo(ctx context.Context, e *env, kind string, nLeaves int, keys, valueSize int64) (*topo, error) {
	t := &topo{kind: kind}
	var err error
	if t.master, err = o.startMaster(ctx, e); err != nil {
		return nil, err
	}
	if keys > 0 {
		if err := populate(ctx, t.master, keys, valueSize); err != nil {
			t.stop()
			return nil, fmt.Errorf("populate: %w", err)
		}
	}
	if isChain(kind) {
		t.upstream, t.middle, err = o.startChain(ctx, e, kind, t.master)
	} else {
		t.middle, err = o.startMiddle(ctx, e, kind, t.master)
	}
	if err != nil {
		t.stop()
		return nil, err
	}
	if t.leaves, err = o.startLeaves(ctx, e, nLeaves); err != nil {
		t.stop()
		return nil, err
	}
	if err := attachAll(ctx, t.leaves, t.serving()); err != nil {
		t.stop()
		return nil, err
	}
	if _, err := waitInSync(ctx, t.master, t.leaves, o.syncTimeout); err != nil {
		t.stop()
		return nil, err
	}
	return t, nil
}
