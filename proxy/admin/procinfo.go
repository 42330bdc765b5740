package admin

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/redis-relay/redis-relay/proxy/status"
)

// INFO memory and INFO cpu for the relay process, in Redis's field names so
// that redis_exporter's memory and CPU panels work on a relay.
//
// The mapping from Go's runtime to Redis's allocator terms:
//
//	used_memory          Go runtime memory in use (heap objects, stacks,
//	                     runtime structures) plus the bytes in the
//	                     replication ring, which is mapped outside the heap
//	used_memory_rss      resident set size from /proc/self/statm (Linux);
//	                     elsewhere the runtime's mapped memory plus the ring
//	used_memory_peak     the highest used_memory INFO has reported
//	used_memory_dataset  0: the relay holds no dataset, all it uses is
//	                     overhead (the snapshot and the log live on disk)
//	allocator_*          the Go heap: live objects, spans in use, mapped
//	                     and not returned to the OS
//	used_cpu_*           getrusage(RUSAGE_SELF); the relay starts no children
//
// mem_fragmentation_ratio and mem_fragmentation_bytes are left out. In
// Redis they compare the RSS with what the allocator handed out, and a
// ratio above 1.5 means fragmentation worth acting on. In a Go process the
// same gap is the garbage collector's headroom (the heap may grow to twice
// the live data before a collection), the runtime and the binary: it is
// normal, it is not fragmentation, and no defragmentation reduces it, so
// a Redis alert on it would fire on every healthy relay.

// peakMemory is the highest used_memory reported. Memory belongs to the
// process, so one value serves every Relay in it.
var peakMemory atomic.Int64

// goMemory is what the Go runtime reports, in bytes.
type goMemory struct {
	mapped   uint64 // everything the runtime has mapped, released pages included
	released uint64 // heap pages returned to the OS
	free     uint64 // heap pages free for reuse, not returned
	unused   uint64 // heap span bytes reserved for objects and not in use
	objects  uint64 // heap objects, live or not yet swept
}

func readGoMemory() goMemory {
	samples := []metrics.Sample{
		{Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/released:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
	}
	metrics.Read(samples)
	v := func(i int) uint64 {
		if samples[i].Value.Kind() == metrics.KindUint64 {
			return samples[i].Value.Uint64()
		}
		return 0
	}
	return goMemory{mapped: v(0), released: v(1), free: v(2), unused: v(3), objects: v(4)}
}

// processRSS reads the resident set size from /proc/self/statm (its second
// field, in pages). ok is false where there is no such file.
func processRSS() (rss int64, ok bool) {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, false
	}
	f := bytes.Fields(b)
	if len(f) < 2 {
		return 0, false
	}
	pages, err := strconv.ParseInt(string(f[1]), 10, 64)
	if err != nil {
		return 0, false
	}
	return pages * int64(os.Getpagesize()), true
}

// systemMemory reads MemTotal from /proc/meminfo; 0 where unknown, as
// Redis reports it.
func systemMemory() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			f := strings.Fields(rest)
			if len(f) == 2 && f[1] == "kB" {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n << 10
			}
		}
	}
	return 0
}

func writeMemory(b *strings.Builder, st *status.Status) {
	kv := func(k string, v any) { fmt.Fprintf(b, "%s:%v\r\n", k, v) }
	m := readGoMemory()
	ring := int64(0)
	if st.HasHistory {
		ring = st.Log.RingBytes
	}
	inUse := int64(m.mapped - m.released - m.free - m.unused)
	used := inUse + ring
	peak := used
	for {
		old := peakMemory.Load()
		if old >= used || peakMemory.CompareAndSwap(old, used) {
			peak = max(old, used)
			break
		}
	}
	rss, ok := processRSS()
	if !ok {
		rss = int64(m.mapped-m.released) + ring
	}
	sys := systemMemory()
	kv("used_memory", used)
	kv("used_memory_human", humanBytes(used))
	kv("used_memory_rss", rss)
	kv("used_memory_rss_human", humanBytes(rss))
	kv("used_memory_peak", peak)
	kv("used_memory_peak_human", humanBytes(peak))
	kv("used_memory_peak_perc", fmt.Sprintf("%.2f%%", percent(used, peak)))
	kv("used_memory_overhead", used)
	kv("used_memory_dataset", 0)
	kv("used_memory_dataset_perc", "0.00%")
	kv("allocator_allocated", m.objects)
	kv("allocator_active", m.mapped-m.released-m.free)
	kv("allocator_resident", m.mapped-m.released)
	kv("total_system_memory", sys)
	kv("total_system_memory_human", humanBytes(sys))
	kv("used_memory_lua", 0)
	kv("used_memory_scripts", 0)
	kv("maxmemory", 0)
	kv("maxmemory_human", "0B")
	kv("maxmemory_policy", "noeviction")
	kv("mem_allocator", "go-"+runtime.Version())
	kv("relay_memory_go_runtime", inUse)
	kv("relay_memory_ring", ring)
}

func writeCPU(b *strings.Builder) {
	user, sys := cpuTimes()
	fmt.Fprintf(b, "used_cpu_sys:%.6f\r\n", sys.Seconds())
	fmt.Fprintf(b, "used_cpu_user:%.6f\r\n", user.Seconds())
	b.WriteString("used_cpu_sys_children:0.000000\r\n")
	b.WriteString("used_cpu_user_children:0.000000\r\n")
}

// humanBytes writes n as Redis's *_human fields do: 512B, 1.50K, 2.00M.
func humanBytes(n int64) string {
	if n < 1024 {
		return strconv.FormatInt(n, 10) + "B"
	}
	f := float64(n)
	unit := -1
	for f >= 1024 && unit < len("KMGTP")-1 {
		f /= 1024
		unit++
	}
	return fmt.Sprintf("%.2f%c", f, "KMGTP"[unit])
}
