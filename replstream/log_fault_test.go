package replstream

import (
	"github.com/redis-relay/redis-relay/internal/redistest"

	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestResumePoint(t *testing.T) {
	set := encodeCmd("SET", "k", "v")
	multi := encodeCmd("MULTI")
	exec := encodeCmd("EXEC")
	discard := encodeCmd("DISCARD")
	incr := encodeCmd("INCR", "n")
	cat := func(parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	for _, tc := range []struct {
		name   string
		stream []byte
		want   int // resume point, relative to the start
	}{
		{"empty", nil, 0},
		{"whole commands", cat(set, incr), len(set) + len(incr)},
		{"half a command", cat(set, incr[:5]), len(set)},
		{"open transaction", cat(set, multi, incr, set), len(set)},
		{"open transaction, half a command", cat(set, multi, incr, set[:3]), len(set)},
		{"closed transaction", cat(set, multi, incr, exec), len(set) + len(multi) + len(incr) + len(exec)},
		{"discarded transaction", cat(multi, incr, discard, set), len(multi) + len(incr) + len(discard) + len(set)},
		{"after a transaction, half a command", cat(multi, incr, exec, set[:9]), len(multi) + len(incr) + len(exec)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const start = 1001
			fr := NewFramer(start, DefaultLimits)
			rp := NewResumePoint(start)
			if _, err := fr.Feed(tc.stream, rp.Add); err != nil {
				t.Fatal(err)
			}
			if got := rp.At() - start; got != int64(tc.want) {
				t.Fatalf("resume point %d, want %d", got, tc.want)
			}
		})
	}
}

// faultyFile fails the next write after writing only half of it, as a
// full disk does.
type faultyFile struct {
	segmentFile
	failNext bool
}

func (f *faultyFile) WriteAt(p []byte, off int64) (int, error) {
	if f.failNext {
		f.failNext = false
		n, _ := f.segmentFile.WriteAt(p[:len(p)/2], off)
		return n, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}
	return f.segmentFile.WriteAt(p, off)
}

// TestLogShortWriteIsOverwritten: a segment write that fails half way
// (a full disk) must not shift the bytes written after it. Append goes on
// into the ring, then reports the error until the write-behind's retry
// succeeds; readers and a reopened log see every byte once.
func TestLogShortWriteIsOverwritten(t *testing.T) {
	m := newMirror(t, 1, LogOptions{RingSize: 4096, SegmentSize: 1 << 20})
	m.appendRandom(rand.New(rand.NewPCG(3, 3)), 300, 40)
	if _, err := m.l.Sync(); err != nil {
		t.Fatal(err)
	}
	m.l.wmu.Lock()
	seg := m.l.segs[len(m.l.segs)-1]
	seg.f = &faultyFile{segmentFile: seg.f, failNext: true}
	m.l.wmu.Unlock()
	cmd := encodeCmd("SET", "after-enospc", strings.Repeat("z", 60))
	if err := m.l.Append(cmd, true); err != nil {
		t.Fatalf("Append while the disk is full must go to the ring: %v", err)
	}
	m.data = append(m.data, cmd...)
	if _, err := m.l.Sync(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Sync on a full disk: %v, want ENOSPC", err)
	}
	if st := m.l.Stats(); st.Written != m.next()-Offset(len(cmd)) {
		t.Fatalf("a failed write moved Written to %d, want %d", st.Written, m.next()-Offset(len(cmd)))
	}
	m.check() // readers are served from the ring meanwhile
	// The retry succeeds once the disk has room again.
	redistest.Eventually(t, 5*time.Second, func() error {
		_, err := m.l.Sync()
		return err
	})
	m.appendRandom(rand.New(rand.NewPCG(4, 4)), 300, 40)
	m.check()
	m.l.Close()
	l, repaired, err := OpenLog(m.dir, smallOpts)
	if err != nil || repaired != "" {
		t.Fatalf("reopen: repaired %q, err %v", repaired, err)
	}
	m.l = l
	t.Cleanup(func() { l.Close() })
	m.check()
}

func TestLogTruncate(t *testing.T) {
	m := newMirror(t, 1, LogOptions{RingSize: 64, SegmentSize: 1 << 20})
	m.appendRandom(rand.New(rand.NewPCG(5, 5)), 500, 40)
	whole := m.next()
	half := encodeCmd("SET", "half", strings.Repeat("h", 200))[:100]
	if err := m.l.Append(half, false); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	behind, _ := m.l.Cursor(whole - 10)
	past, _ := m.l.Cursor(whole)
	buf := make([]byte, 50)
	if _, err := past.Read(ctx, buf); err != nil { // reads into the partial command
		t.Fatal(err)
	}
	cut, err := m.l.CutToResumePoint()
	if err != nil || cut != int64(len(half)) {
		t.Fatalf("CutToResumePoint = %d, %v; want %d", cut, err, len(half))
	}
	if _, next := m.l.Range(); next != whole {
		t.Fatalf("Next after the cut %d, want %d", next, whole)
	}
	if _, err := past.Read(ctx, buf); !errors.Is(err, ErrTruncated) {
		t.Fatalf("cursor past the cut: %v, want ErrTruncated", err)
	}
	// New bytes take the cut offsets, also for a reader that was waiting
	// exactly at the cut, and one that returned bytes up to it only.
	at, _ := m.l.Cursor(whole)
	m.appendRandom(rand.New(rand.NewPCG(6, 6)), 300, 40)
	got := make([]byte, 0, 400)
	for behind.Offset() < m.next() {
		n, err := behind.Read(ctx, buf)
		if err != nil {
			t.Fatalf("cursor before the cut: %v", err)
		}
		got = append(got, buf[:n]...)
	}
	if want := m.data[whole-10-m.base:]; string(got) != string(want) {
		t.Fatalf("cursor before the cut read %q, want %q", clip(got), clip(want))
	}
	if _, err := at.Read(ctx, buf); err != nil {
		t.Fatalf("cursor at the cut: %v", err)
	}
	m.check()
	m.l.Close()
	l, repaired, err := OpenLog(m.dir, smallOpts)
	if err != nil || repaired != "" {
		t.Fatalf("reopen: repaired %q, err %v", repaired, err)
	}
	m.l = l
	t.Cleanup(func() { l.Close() })
	m.check()
}

func TestLogCutToResumePointKeepsTransactionsWhole(t *testing.T) {
	m := newMirror(t, 1, LogOptions{RingSize: 64, SegmentSize: 1 << 20})
	m.appendRandom(rand.New(rand.NewPCG(7, 7)), 200, 40)
	whole := m.next()
	tx := joinCmds([]string{"MULTI"}, []string{"INCR", "a"}, []string{"SET", "b", "c"})
	if err := m.l.Append(tx, true); err != nil { // a command boundary, not a resume point
		t.Fatal(err)
	}
	if cut, err := m.l.CutToResumePoint(); err != nil || cut != int64(len(tx)) {
		t.Fatalf("CutToResumePoint = %d, %v; want the open transaction (%d bytes)", cut, err, len(tx))
	}
	full := joinCmds([]string{"MULTI"}, []string{"INCR", "a"}, []string{"EXEC"})
	if err := m.l.Append(full, true); err != nil {
		t.Fatal(err)
	}
	m.data = append(m.data, full...)
	if cut, err := m.l.CutToResumePoint(); err != nil || cut != 0 {
		t.Fatalf("CutToResumePoint after EXEC = %d, %v; want 0", cut, err)
	}
	if _, next := m.l.Range(); next != whole+Offset(len(full)) {
		t.Fatalf("Next %d", next)
	}
	m.check()
}

// TestLogFullFilesystem fills a real (small tmpfs) filesystem under the
// log, frees space, and resends what failed, as the upstream link does
// after a reconnect: the log must hold every byte once.
func TestLogFullFilesystem(t *testing.T) {
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small tmpfs here (needs root and mount rights): %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	// Leave about 300 KB free.
	filler := filepath.Join(mnt, "filler")
	if out, err := exec.Command("dd", "if=/dev/zero", "of="+filler, "bs=1k", fmt.Sprint("count=", 2048-300)).CombinedOutput(); err != nil {
		t.Fatalf("dd: %v: %s", err, out)
	}
	opt := LogOptions{RingSize: 32 << 10, SegmentSize: 64 << 10}
	dir := filepath.Join(mnt, "log")
	l, err := CreateLog(dir, 1, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { l.Close() }()
	var data []byte
	val := strings.Repeat("v", 9000)
	var failed []byte
	for i := 0; ; i++ {
		cmd := encodeCmd("SET", fmt.Sprint("k", i), val)
		if err := l.Append(cmd, true); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("append %d: %v, want ENOSPC", i, err)
			}
			failed = cmd
			break
		}
		data = append(data, cmd...)
		if i > 1000 {
			t.Fatal("the filesystem never filled")
		}
	}
	if _, next := l.Range(); next != Offset(1+len(data)) {
		t.Fatalf("Next %d after ENOSPC, want %d", next, 1+len(data))
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	// The link comes back and the master resends what was refused, until
	// the write-behind's retry has found room.
	redistest.Eventually(t, 5*time.Second, func() error { return l.Append(failed, true) })
	data = append(data, failed...)
	if _, err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := readUpTo(t, l, 1, Offset(1+len(data)), 4096); string(got) != string(data) {
		t.Fatalf("log holds %d bytes that differ from the %d appended (first difference at %d)", len(got), len(data), firstDiff(got, data))
	}
	l.Close()
	l, repaired, err := OpenLog(dir, opt)
	if err != nil || repaired != "" {
		t.Fatalf("reopen: repaired %q, err %v", repaired, err)
	}
	if got := readUpTo(t, l, 1, Offset(1+len(data)), 4096); string(got) != string(data) {
		t.Fatalf("reopened log differs from what was appended (first difference at %d)", firstDiff(got, data))
	}
}
