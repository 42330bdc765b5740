package admin

import (
	"github.com/redis-relay/redis-relay/internal/resp"
)

// SUBSCRIBE, UNSUBSCRIBE and PUBLISH, for Redis Sentinel's hello protocol.
// The registry of who listens to what is the server's (downstream.PubSub);
// these handlers answer through it.

func (a *Admin) subscribe(out []byte, who clientInfo, args [][]byte) ([]byte, effect) {
	channels := args[1:]
	if len(channels) == 0 {
		return appendWrongArgs(out, "subscribe"), effect{}
	}
	n := 0
	for _, ch := range channels {
		name := string(ch)
		n = a.ps.Subscribe(who.Sub, name)
		out = appendSubscription(out, "subscribe", name, n, who.RESP3)
	}
	return out, effect{Subscribed: true, Subscriptions: n}
}

func (a *Admin) unsubscribe(out []byte, who clientInfo, args [][]byte) ([]byte, effect) {
	channels := args[1:]
	var names []string
	if len(channels) == 0 {
		names = a.ps.Channels(who.Sub)
	} else {
		for _, ch := range channels {
			names = append(names, string(ch))
		}
	}
	if len(names) == 0 {
		out = resp.AppendPushHeader(out, 3, who.RESP3)
		out = resp.AppendBulk(out, "unsubscribe")
		out = resp.AppendNil(out, who.RESP3)
		return resp.AppendInt(out, 0), effect{Subscribed: true, Subscriptions: 0}
	}
	n := 0
	for _, name := range names {
		n = a.ps.Unsubscribe(who.Sub, name)
		out = appendSubscription(out, "unsubscribe", name, n, who.RESP3)
	}
	return out, effect{Subscribed: true, Subscriptions: n}
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

func (a *Admin) patternSubscribe(out []byte, _ clientInfo, _ [][]byte) ([]byte, effect) {
	return resp.AppendError(out, "ERR pattern subscriptions are not supported by the relay"), effect{}
}

func (a *Admin) publishCommand(out []byte, _ clientInfo, args [][]byte) ([]byte, effect) {
	if len(args) != 3 {
		return appendWrongArgs(out, "publish"), effect{}
	}
	return resp.AppendInt(out, int64(a.ps.Publish(string(args[1]), string(args[2])))), effect{}
}
