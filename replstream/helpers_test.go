package replstream

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strconv"
)

// encodeCmd renders args as a RESP array of bulk strings, the way a master
// propagates a command.
func encodeCmd(args ...string) []byte {
	var b []byte
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(len(args)), 10)
	b = append(b, '\r', '\n')
	for _, a := range args {
		b = append(b, '$')
		b = strconv.AppendInt(b, int64(len(a)), 10)
		b = append(b, '\r', '\n')
		b = append(b, a...)
		b = append(b, '\r', '\n')
	}
	return b
}

// joinCmds concatenates the encodings of cmds.
func joinCmds(cmds ...[]string) []byte {
	var b []byte
	for _, c := range cmds {
		b = append(b, encodeCmd(c...)...)
	}
	return b
}

// randBytes returns n pseudo-random bytes drawn from an alphabet that is rich
// in RESP framing characters, so that payloads look like protocol.
func randBytes(rng *rand.Rand, n int) []byte {
	const alphabet = "*$\r\n0123456789abcdefXYZ-+: \x00\xff"
	b := make([]byte, n)
	for i := range b {
		if rng.IntN(4) == 0 {
			b[i] = byte(rng.IntN(256))
		} else {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
	}
	return b
}

// randCmd is a command whose content can be checked: a SET whose key carries
// a sequence number and whose value has a random size (sometimes large), or
// one of the small commands a master sends between writes.
func randCmd(rng *rand.Rand, seq int) []string {
	switch rng.IntN(10) {
	case 0:
		return []string{"PING"}
	case 1:
		return []string{"REPLCONF", "GETACK", "*"}
	case 2:
		return []string{"SELECT", strconv.Itoa(rng.IntN(16))}
	}
	size := rng.IntN(64)
	if rng.IntN(8) == 0 {
		size = rng.IntN(4096)
	}
	return []string{"SET", fmt.Sprintf("key:%d", seq), string(randBytes(rng, size))}
}

// randStream returns about size bytes of whole commands, and the end offset
// (relative to the start of the stream) of every command in it.
func randStream(rng *rand.Rand, size int) (stream []byte, ends []int) {
	for seq := 0; len(stream) < size; seq++ {
		stream = append(stream, encodeCmd(randCmd(rng, seq)...)...)
		ends = append(ends, len(stream))
	}
	return stream, ends
}

// setStream is n "SET key:<i> <valueSize bytes>" commands, the shape of a
// write-heavy replication stream.
func setStream(n, valueSize int) []byte {
	val := bytes.Repeat([]byte("v"), valueSize)
	var b []byte
	for i := 0; i < n; i++ {
		b = append(b, encodeCmd("SET", "key:"+strconv.Itoa(i), string(val))...)
	}
	return b
}

// chunking splits a stream into pieces; each returns the cut points.
type chunking struct {
	name string
	cuts func(n int) []int // strictly increasing, in (0, n)
}

var chunkings = []chunking{
	{"whole", func(int) []int { return nil }},
	{"bytewise", func(n int) []int {
		var c []int
		for i := 1; i < n; i++ {
			c = append(c, i)
		}
		return c
	}},
	{"halves", func(n int) []int {
		if n < 2 {
			return nil
		}
		return []int{n / 2}
	}},
	{"random1", randomCuts(1)},
	{"random2", randomCuts(2)},
	{"random3", randomCuts(3)},
	{"sevens", func(n int) []int {
		var c []int
		for i := 7; i < n; i += 7 {
			c = append(c, i)
		}
		return c
	}},
}

func randomCuts(seed uint64) func(int) []int {
	return func(n int) []int {
		rng := rand.New(rand.NewPCG(seed, uint64(n)))
		var c []int
		for i := 0; ; {
			i += 1 + rng.IntN(13)
			if i >= n {
				return c
			}
			c = append(c, i)
		}
	}
}

// split cuts p at the given points.
func split(p []byte, cuts []int) [][]byte {
	var out [][]byte
	prev := 0
	for _, c := range cuts {
		out = append(out, p[prev:c])
		prev = c
	}
	return append(out, p[prev:])
}
