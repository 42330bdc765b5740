package proxy

import (
	"sort"

	"github.com/redis-relay/redis-relay/internal/resp"
)

// A small local publish/subscribe, so that Redis Sentinel can run its hello
// protocol (SUBSCRIBE and PUBLISH on __sentinel__:hello) on the relay as on
// any replica it monitors. Messages stay on the relay: it holds no dataset
// and is not part of the master's pub/sub.

const maxSubscriptions = 64 // per client

// subscriber is a connection PUBLISH can deliver to. The server implements
// it; deliver writes one message, given in RESP2 (a RESP3 connection sends
// it as a push), and reports whether it went out.
type subscriber interface {
	deliver(msg []byte) error
}

func (a *admin) subscribe(out []byte, who clientInfo, args [][]byte) ([]byte, effect) {
	channels := args[1:]
	if len(channels) == 0 {
		return appendWrongArgs(out, "subscribe"), effect{}
	}
	n := 0
	for _, ch := range channels {
		name := string(ch)
		a.psMu.Lock()
		mine := a.subs[who.sub]
		if len(mine) < maxSubscriptions {
			if mine == nil {
				mine = make(map[string]struct{})
				a.subs[who.sub] = mine
			}
			mine[name] = struct{}{}
			if a.channels[name] == nil {
				a.channels[name] = make(map[subscriber]struct{})
			}
			a.channels[name][who.sub] = struct{}{}
		}
		n = len(mine)
		a.psMu.Unlock()
		out = appendSubscription(out, "subscribe", name, n, who.resp3)
	}
	return out, effect{subscribed: true, subscriptions: n}
}

func (a *admin) unsubscribe(out []byte, who clientInfo, args [][]byte) ([]byte, effect) {
	channels := args[1:]
	a.psMu.Lock()
	var names []string
	if len(channels) == 0 {
		for name := range a.subs[who.sub] {
			names = append(names, name)
		}
		sort.Strings(names)
	} else {
		for _, ch := range channels {
			names = append(names, string(ch))
		}
	}
	a.psMu.Unlock()
	if len(names) == 0 {
		out = resp.AppendPushHeader(out, 3, who.resp3)
		out = resp.AppendBulk(out, "unsubscribe")
		out = resp.AppendNil(out, who.resp3)
		return resp.AppendInt(out, 0), effect{subscribed: true, subscriptions: 0}
	}
	n := 0
	for _, name := range names {
		a.psMu.Lock()
		a.drop(who.sub, name)
		n = len(a.subs[who.sub])
		a.psMu.Unlock()
		out = appendSubscription(out, "unsubscribe", name, n, who.resp3)
	}
	return out, effect{subscribed: true, subscriptions: n}
}

// appendSubscription appends the confirmation of one SUBSCRIBE or
// UNSUBSCRIBE channel: the kind, the channel, and how many channels the
// connection listens to now; a push in RESP3.
func appendSubscription(out []byte, kind, channel string, n int, resp3 bool) []byte {
	out = resp.AppendPushHeader(out, 3, resp3)
	out = resp.AppendBulk(out, kind)
	out = resp.AppendBulk(out, channel)
	return resp.AppendInt(out, int64(n))
}

// drop removes sub from channel. psMu must be held.
func (a *admin) drop(sub subscriber, channel string) {
	if mine := a.subs[sub]; mine != nil {
		delete(mine, channel)
		if len(mine) == 0 {
			delete(a.subs, sub)
		}
	}
	delete(a.channels[channel], sub)
	if len(a.channels[channel]) == 0 {
		delete(a.channels, channel)
	}
}

// unsubscribeAll forgets every subscription of sub; the server calls it
// when the connection closes.
func (a *admin) unsubscribeAll(sub subscriber) {
	a.psMu.Lock()
	defer a.psMu.Unlock()
	for name := range a.subs[sub] {
		a.drop(sub, name)
	}
}

func (a *admin) patternSubscribe(out []byte, _ clientInfo, _ [][]byte) ([]byte, effect) {
	return resp.AppendError(out, "ERR pattern subscriptions are not supported by the relay"), effect{}
}

func (a *admin) publishCommand(out []byte, _ clientInfo, args [][]byte) ([]byte, effect) {
	if len(args) != 3 {
		return appendWrongArgs(out, "publish"), effect{}
	}
	return resp.AppendInt(out, int64(a.publish(string(args[1]), string(args[2])))), effect{}
}

// publish delivers msg to the relay's subscribers of channel and returns
// how many received it. Delivery is the subscriber's: the server's gives
// up on (and closes) a connection that cannot take a message in a second.
// No lock is held while delivering.
func (a *admin) publish(channel, msg string) int {
	a.psMu.Lock()
	targets := make([]subscriber, 0, len(a.channels[channel]))
	for s := range a.channels[channel] {
		targets = append(targets, s)
	}
	a.psMu.Unlock()
	out := resp.AppendArray(nil, 3)
	out = resp.AppendBulk(out, "message")
	out = resp.AppendBulk(out, channel)
	out = resp.AppendBulk(out, msg)
	n := 0
	for _, s := range targets {
		if s.deliver(out) == nil {
			n++
		}
	}
	return n
}

// channelCount is the number of channels with a subscriber (INFO
// pubsub_channels).
func (a *admin) channelCount() int {
	a.psMu.Lock()
	defer a.psMu.Unlock()
	return len(a.channels)
}
