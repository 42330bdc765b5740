package fsutil

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// WriteFile replaces the file at path with data, durably: when it returns
// nil the new content survives a power loss. The file gets exactly perm
// (not narrowed by the umask). When it fails, path still holds its old
// content (or still does not exist) and no temporary file is left, except
// when the last step, the directory fsync, fails: the new content is then
// in place but may not survive a power loss.
func WriteFile(path string, data []byte, perm fs.FileMode) error {
	return WriteFileWithSync(path, data, perm, (*os.File).Sync)
}

// WriteFileWithSync is WriteFile with sync in place of (*os.File).Sync to
// make the temporary file durable, so that a caller's tests can watch,
// delay or fail that step. sync must not close the file.
func WriteFileWithSync(path string, data []byte, perm fs.FileMode, sync func(*os.File) error) error {
	dir, name := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, name+".tmp-*")
	if err != nil {
		return fmt.Errorf("create temporary file for %s: %w", path, err)
	}
	tmp := f.Name()
	// discard undoes everything before the rename.
	discard := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if _, err := f.Write(data); err != nil {
		return discard(fmt.Errorf("write %s: %w", tmp, err))
	}
	// CreateTemp makes the file 0600; Chmod sets perm as given.
	if err := f.Chmod(perm); err != nil {
		return discard(fmt.Errorf("chmod %s: %w", tmp, err))
	}
	if err := sync(f); err != nil {
		return discard(fmt.Errorf("sync %s: %w", tmp, err))
	}
	if err := f.Close(); err != nil {
		return discard(fmt.Errorf("close %s: %w", tmp, err))
	}
	if err := os.Rename(tmp, path); err != nil {
		return discard(fmt.Errorf("rename %s over %s: %w", tmp, path, err))
	}
	return SyncDir(dir)
}

// SyncDir fsyncs the directory dir, which makes the files created, renamed
// or removed in it since durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory %s to sync: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
