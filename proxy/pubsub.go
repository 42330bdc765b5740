package proxy

import (
	"sort"
	"time"

	"github.com/redis-relay/redis-relay/internal/resp"
)

// A small local publish/subscribe, so that Redis Sentinel can run its hello
// protocol (SUBSCRIBE and PUBLISH on __sentinel__:hello) on the relay as on
// any replica it monitors. Messages stay on the relay: it holds no dataset
// and is not part of the master's pub/sub.

const maxSubscriptions = 64 // per client

func (a *admin) subscribe(c *client, channels [][]byte) {
	if len(channels) == 0 {
		c.wrongArgs("subscribe")
		return
	}
	for _, ch := range channels {
		name := string(ch)
		a.psMu.Lock()
		if len(c.subs) < maxSubscriptions {
			if c.subs == nil {
				c.subs = make(map[string]struct{})
			}
			c.subs[name] = struct{}{}
			if a.channels[name] == nil {
				a.channels[name] = make(map[*client]struct{})
			}
			a.channels[name][c] = struct{}{}
		}
		n := len(c.subs)
		a.psMu.Unlock()
		c.out = resp.AppendArray(c.out, 3)
		c.out = resp.AppendBulk(c.out, "subscribe")
		c.out = resp.AppendBulk(c.out, name)
		c.out = resp.AppendInt(c.out, int64(n))
	}
}

func (a *admin) unsubscribe(c *client, channels [][]byte) {
	a.psMu.Lock()
	var names []string
	if len(channels) == 0 {
		for name := range c.subs {
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
		c.out = resp.AppendArray(c.out, 3)
		c.out = resp.AppendBulk(c.out, "unsubscribe")
		c.out = resp.AppendNull(c.out)
		c.out = resp.AppendInt(c.out, 0)
		return
	}
	for _, name := range names {
		a.psMu.Lock()
		delete(c.subs, name)
		delete(a.channels[name], c)
		if len(a.channels[name]) == 0 {
			delete(a.channels, name)
		}
		n := len(c.subs)
		a.psMu.Unlock()
		c.out = resp.AppendArray(c.out, 3)
		c.out = resp.AppendBulk(c.out, "unsubscribe")
		c.out = resp.AppendBulk(c.out, name)
		c.out = resp.AppendInt(c.out, int64(n))
	}
}

func (a *admin) unsubscribeAll(c *client) {
	a.psMu.Lock()
	defer a.psMu.Unlock()
	for name := range c.subs {
		delete(a.channels[name], c)
		if len(a.channels[name]) == 0 {
			delete(a.channels, name)
		}
	}
	c.subs = nil
}

// publish delivers msg to the relay's subscribers of channel and returns
// how many received it. A subscriber that cannot take it within a second is
// disconnected.
func (a *admin) publish(channel, msg string) int {
	a.psMu.Lock()
	targets := make([]*client, 0, len(a.channels[channel]))
	for c := range a.channels[channel] {
		targets = append(targets, c)
	}
	a.psMu.Unlock()
	out := resp.AppendArray(nil, 3)
	out = resp.AppendBulk(out, "message")
	out = resp.AppendBulk(out, channel)
	out = resp.AppendBulk(out, msg)
	n := 0
	for _, c := range targets {
		c.wmu.Lock()
		c.nc.SetWriteDeadline(time.Now().Add(time.Second))
		_, err := c.nc.Write(out)
		c.wmu.Unlock()
		if err != nil {
			c.nc.Close()
			continue
		}
		n++
	}
	return n
}
