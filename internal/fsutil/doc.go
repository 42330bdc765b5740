// Package fsutil replaces files so that a crash or a power loss at any
// moment leaves either the old content or the new, never a mix and never an
// empty file.
//
// WriteFile writes the new content to a temporary file beside the target
// (same directory, so the rename cannot cross file systems), fsyncs it,
// renames it over the target and then fsyncs the directory, since the
// rename lives in the directory's entries and is only durable once they
// are. The temporary file is named "<target>.tmp-<random>"; a process that
// dies between creating and renaming it leaves one behind, which a caller
// that owns the directory may remove on start-up by that prefix.
//
// The package uses the standard library only, so any package of ours may
// import it.
package fsutil
