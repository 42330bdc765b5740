package downstream

import (
	"sort"
	"sync"

	"github.com/redis-relay/redis-relay/internal/resp"
)

// A small local publish/subscribe, so that Redis Sentinel can run its hello
// protocol (SUBSCRIBE and PUBLISH on __sentinel__:hello) on the relay as on
// any replica it monitors. Messages stay on the relay: it holds no dataset
// and is not part of the master's pub/sub. The registry is the server's;
// the SUBSCRIBE, UNSUBSCRIBE and PUBLISH handlers answer through it.

// MaxSubscriptions bounds the channels one connection may listen to.
const MaxSubscriptions = 64

// Subscriber is a connection PUBLISH can deliver to. The server's
// connections implement it; Deliver writes one message, given in RESP2 (a
// connection that chose RESP3 sends it as a push), and reports whether
// it went out.
type Subscriber interface {
	Deliver(msg []byte) error
}

// PubSub records which connection listens to which channel. mu is a leaf
// lock, never held while a message is delivered.
type PubSub struct {
	mu       sync.Mutex
	channels map[string]map[Subscriber]struct{} // subscribers of each channel; guarded by mu
	subs     map[Subscriber]map[string]struct{} // channels of each subscriber; guarded by mu
}

func newPubSub() *PubSub {
	return &PubSub{
		channels: make(map[string]map[Subscriber]struct{}),
		subs:     make(map[Subscriber]map[string]struct{}),
	}
}

// Subscribe adds channel to sub's, unless sub listens to MaxSubscriptions
// already, and returns how many channels sub listens to now.
func (p *PubSub) Subscribe(sub Subscriber, channel string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	mine := p.subs[sub]
	if len(mine) < MaxSubscriptions {
		if mine == nil {
			mine = make(map[string]struct{})
			p.subs[sub] = mine
		}
		mine[channel] = struct{}{}
		if p.channels[channel] == nil {
			p.channels[channel] = make(map[Subscriber]struct{})
		}
		p.channels[channel][sub] = struct{}{}
	}
	return len(mine)
}

// Channels lists the channels sub listens to, sorted.
func (p *PubSub) Channels(sub Subscriber) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var names []string
	for name := range p.subs[sub] {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// Unsubscribe removes channel from sub's and returns how many channels sub
// listens to now.
func (p *PubSub) Unsubscribe(sub Subscriber, channel string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.drop(sub, channel)
	return len(p.subs[sub])
}

// drop removes sub from channel. mu must be held.
func (p *PubSub) drop(sub Subscriber, channel string) {
	if mine := p.subs[sub]; mine != nil {
		delete(mine, channel)
		if len(mine) == 0 {
			delete(p.subs, sub)
		}
	}
	delete(p.channels[channel], sub)
	if len(p.channels[channel]) == 0 {
		delete(p.channels, channel)
	}
}

// UnsubscribeAll forgets every subscription of sub; the server calls it
// when the connection closes.
func (p *PubSub) UnsubscribeAll(sub Subscriber) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for name := range p.subs[sub] {
		p.drop(sub, name)
	}
}

// Publish delivers msg to the subscribers of channel and returns how many
// received it. Delivery is the subscriber's: the server's gives up on (and
// closes) a connection that cannot take a message in a second. No lock is
// held while delivering.
func (p *PubSub) Publish(channel, msg string) int {
	p.mu.Lock()
	targets := make([]Subscriber, 0, len(p.channels[channel]))
	for s := range p.channels[channel] {
		targets = append(targets, s)
	}
	p.mu.Unlock()
	out := resp.AppendArray(nil, 3)
	out = resp.AppendBulk(out, "message")
	out = resp.AppendBulk(out, channel)
	out = resp.AppendBulk(out, msg)
	n := 0
	for _, s := range targets {
		if s.Deliver(out) == nil {
			n++
		}
	}
	return n
}

// ChannelCount is the number of channels with a subscriber (INFO
// pubsub_channels).
func (p *PubSub) ChannelCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.channels)
}
