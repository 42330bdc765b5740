package fsutil

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// names lists the entries of dir.
func names(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	for _, tt := range []struct {
		name string
		data string
		perm os.FileMode
	}{
		{"create", "first", 0o600},
		{"replace", "second, longer than the first", 0o644},
		{"shrink", "3", 0o640},
		{"empty", "", 0o600},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := WriteFile(path, []byte(tt.data), tt.perm); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(path)
			if err != nil || string(got) != tt.data {
				t.Fatalf("read back %q, %v; want %q", got, err, tt.data)
			}
			fi, err := os.Stat(path)
			if err != nil || fi.Mode().Perm() != tt.perm {
				t.Fatalf("mode %v, %v; want %v", fi.Mode().Perm(), err, tt.perm)
			}
			if n := names(t, dir); !slices.Equal(n, []string{"state.json"}) {
				t.Fatalf("directory holds %v, want only state.json", n)
			}
		})
	}
}

func TestWriteFileSyncsTheNewContentBeforeTheRename(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "relay.conf")
	if err := WriteFile(path, []byte("port 6379\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	type call struct{ name, content, target string }
	var calls []call
	sync := func(f *os.File) error {
		got, err := os.ReadFile(f.Name())
		if err != nil {
			return err
		}
		target, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		calls = append(calls, call{filepath.Base(f.Name()), string(got), string(target)})
		return f.Sync()
	}
	if err := WriteFileWithSync(path, []byte("port 6380\n"), 0o644, sync); err != nil {
		t.Fatal(err)
	}
	if len(calls) != 1 {
		t.Fatalf("sync called %d times, want once", len(calls))
	}
	c := calls[0]
	if !strings.HasPrefix(c.name, "relay.conf.tmp-") || c.content != "port 6380\n" || c.target != "port 6379\n" {
		t.Errorf("sync saw %+v; want relay.conf.tmp-* with the new content and the target still old", c)
	}
	if got, err := os.ReadFile(path); err != nil || string(got) != "port 6380\n" {
		t.Errorf("after the write the file holds %q, %v", got, err)
	}
}

func TestWriteFileFailedSyncKeepsOldFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	if err := WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	errDisk := errors.New("disk on fire")
	err := WriteFileWithSync(path, []byte("new"), 0o600, func(*os.File) error { return errDisk })
	if !errors.Is(err, errDisk) {
		t.Fatalf("WriteFileWithSync = %v, want it to wrap %v", err, errDisk)
	}
	if got, err := os.ReadFile(path); err != nil || string(got) != "old" {
		t.Fatalf("after a failed sync the file holds %q, %v; want the old content", got, err)
	}
	if n := names(t, dir); !slices.Equal(n, []string{"state.json"}) {
		t.Fatalf("directory holds %v, want only state.json", n)
	}
}

func TestWriteFileMissingDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gone", "state.json")
	if err := WriteFile(path, []byte("x"), 0o600); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("WriteFile into a missing directory: %v, want ErrNotExist", err)
	}
}

func TestSyncDir(t *testing.T) {
	if err := SyncDir(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if err := SyncDir(filepath.Join(t.TempDir(), "gone")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("SyncDir of a missing directory: %v, want ErrNotExist", err)
	}
}
