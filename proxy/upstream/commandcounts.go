package upstream

import "time"

// maxCommandNames bounds how many distinct command names are counted; a
// hostile or corrupt stream cannot grow the table past it.
const maxCommandNames = 256

// commandCounts counts relayed commands by lower-case name. It belongs to
// the upstream link's run goroutine and is copied to Link.commands when the link goes idle
// and at least once a second, so counting costs one map lookup per command
// and no lock.
type commandCounts struct {
	n         map[string]*int64
	published time.Time
}

func (c *commandCounts) add(name []byte) {
	var buf [32]byte
	k := copy(buf[:], name)
	for i := range k {
		if b := buf[i]; 'A' <= b && b <= 'Z' {
			buf[i] = b + 'a' - 'A'
		}
	}
	key := buf[:k]
	if p := c.n[string(key)]; p != nil {
		*p++
		return
	}
	if c.n == nil {
		c.n = make(map[string]*int64)
	}
	if len(c.n) >= maxCommandNames {
		key = []byte("other")
		if p := c.n["other"]; p != nil {
			*p++
			return
		}
	}
	one := int64(1)
	c.n[string(key)] = &one
}

// maybePublish copies the counts to the link's published table when the link is about to
// wait for more data (idle), and at least once a second under load.
func (c *commandCounts) maybePublish(u *Link, idle bool) {
	if idle || time.Since(c.published) >= time.Second {
		c.publish(u)
	}
}

func (c *commandCounts) publish(u *Link) {
	c.published = time.Now()
	u.cmdMu.Lock()
	defer u.cmdMu.Unlock()
	if u.commands == nil {
		u.commands = make(map[string]int64, len(c.n))
	}
	for name, n := range c.n {
		u.commands[name] = *n
	}
}
