package history

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/redis-relay/redis-relay/internal/redistest"
	"github.com/redis-relay/redis-relay/proxy/settings"
	"github.com/redis-relay/redis-relay/replstream"
)

// openTestStore opens a store on dir with the default settings, logging
// to the test's output, and closes it when the test ends.
func openTestStore(t testing.TB, dir string, edit ...func(*settings.Config)) *Store {
	t.Helper()
	h := openStore(t, dir, edit...)
	t.Cleanup(func() { h.Close() })
	return h
}

// openStore opens a store on dir; the caller closes it.
func openStore(t testing.TB, dir string, edit ...func(*settings.Config)) *Store {
	t.Helper()
	cfg := settings.Config{DataDir: dir, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))}
	for _, f := range edit {
		f(&cfg)
	}
	cfg.FillDefaults()
	h, err := Open(settings.NewLive(cfg), cfg.Logger)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// installTestSnapshot makes rdbparse's small.rdb (26 keys, no repl aux
// fields) the store's history as a full sync from upstream would, and waits
// for its summary.
func installTestSnapshot(t testing.TB, h *Store, replid string, offset int64) {
	t.Helper()
	rdb, err := os.ReadFile(filepath.Join("..", "..", "rdbparse", "testdata", "small.rdb"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := h.BeginFullSync(replid, offset)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write(rdb); err != nil {
		t.Fatal(err)
	}
	if _, err := h.CommitFullSync(s); err != nil {
		t.Fatalf("commit: %v", err)
	}
	redistest.Eventually(t, 30*time.Second, func() error {
		if st, _, _ := h.Status(); !st.HasHistory || st.Snapshot.Keys <= 0 {
			return fmt.Errorf("snapshot not counted: history %v, keys %d", st.HasHistory, st.Snapshot.Keys)
		}
		return nil
	})
}

// warnCounter counts log lines at warning level or above with one message
// and passes every line on.
type warnCounter struct {
	slog.Handler
	message string
	mu      *sync.Mutex
	n       *int
}

func (w *warnCounter) Handle(ctx context.Context, rec slog.Record) error {
	if rec.Level >= slog.LevelWarn && rec.Message == w.message {
		w.mu.Lock()
		*w.n++
		w.mu.Unlock()
	}
	return w.Handler.Handle(ctx, rec)
}

func (w *warnCounter) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *w
	c.Handler = w.Handler.WithAttrs(attrs)
	return &c
}

func (w *warnCounter) WithGroup(name string) slog.Handler {
	c := *w
	c.Handler = w.Handler.WithGroup(name)
	return &c
}

func (w *warnCounter) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return *w.n
}

// TestStateWritesSerialized: replid shifts (failovers) and snapshot summary
// updates all rewrite state.json. Racing them must lose none: every write
// succeeds, state.json ends with the identity the history serves, and no
// temporary state files are left behind.
func TestStateWritesSerialized(t *testing.T) {
	dir := t.TempDir()
	warnings := &warnCounter{Handler: slog.NewTextHandler(t.Output(), nil), message: "record snapshot summary", mu: new(sync.Mutex), n: new(int)}
	h := openStore(t, dir, func(c *settings.Config) { c.Logger = slog.New(warnings) })
	installTestSnapshot(t, h, replstream.RandomHex40(), 1000)

	const shifters, shifts, summarizers, summaries = 8, 20, 4, 20
	errs := make(chan error, shifters*shifts)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range shifters {
		wg.Go(func() {
			<-start
			for range shifts {
				if err := h.ShiftReplID(replstream.RandomHex40()); err != nil {
					errs <- err
				}
			}
		})
	}
	for range summarizers {
		wg.Go(func() {
			<-start
			for range summaries {
				h.mu.Lock()
				snap := h.snap
				h.mu.Unlock()
				h.afterParse(snap)
			}
		})
	}
	close(start)
	wg.Wait()
	h.bg.Wait() // the summary writes run in the background
	close(errs)
	var failed []string
	for err := range errs {
		failed = append(failed, err.Error())
	}
	if len(failed) > 0 {
		t.Errorf("%d of %d replid shifts failed, e.g. %s", len(failed), shifters*shifts, failed[0])
	}
	if n := warnings.count(); n > 0 {
		t.Errorf("%d snapshot summary writes failed", n)
	}

	disk, err := ReadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, _, _ := h.Status()
	served := st.Identity
	if disk.Identity != served {
		t.Errorf("state.json identity %+v, history serves %+v", disk.Identity, served)
	}
	if fi, err := os.Stat(h.Path(disk.Snapshot.File)); err != nil || fi.Size() != disk.Snapshot.Size {
		t.Errorf("snapshot %s named by state.json (size %d): %v", disk.Snapshot.File, disk.Snapshot.Size, fmt.Sprint(fi, err))
	}
	if left, _ := filepath.Glob(h.Path(StateFile + ".tmp*")); len(left) > 0 {
		t.Errorf("temporary state files left behind: %v", left)
	}

	// What a restart finds is what the history served.
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	again := openTestStore(t, dir)
	if st, _, _ := again.Status(); st.Identity != served {
		t.Errorf("after restart the history has identity %+v, served %+v before", st.Identity, served)
	}
}
