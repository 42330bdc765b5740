package downstream

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis-relay/redis-relay/internal/resp"
	"github.com/redis-relay/redis-relay/proxy/history"
	"github.com/redis-relay/redis-relay/rdbparse"
	"github.com/redis-relay/redis-relay/replstream"
)

// Filtered full syncs. A client that sends REPLCONF rdb-filter-only asks
// for an RDB without keys: with "" nothing at all (redis-cli --replica,
// which then prints the stream), with "functions" the function libraries
// (redis-cli --functions-rdb). The relay has no dataset of its own, but it
// needs none for that: it writes an RDB as of the stream's current offset,
// with the snapshot's libraries changed by every FUNCTION LOAD, DELETE,
// FLUSH and RESTORE in the log after the snapshot, and then streams from
// that offset. A FUNCTION command it cannot follow truthfully (a RESTORE
// payload it cannot read, a subcommand it does not know) refuses the sync
// with an error rather than give libraries the master does not have.

// parseRDBFilter reads the value of REPLCONF rdb-filter-only: filters
// separated by spaces, of which Redis knows one, "functions" (source:
// replconfCommand). It reports whether the libraries are wanted, or the
// filter it does not know.
func parseRDBFilter(v string) (functions bool, unknown string) {
	for _, f := range strings.Fields(v) {
		if !strings.EqualFold(f, "functions") {
			return false, f
		}
		functions = true
	}
	return functions, ""
}

// filteredSync serves a client that asked for rdb-filter-only: an RDB of
// what it asked for as of the current offset, then, unless it asked for
// rdb-only too, the stream from there.
func (s *session) filteredSync(ctx context.Context) error {
	srv := s.srv
	src, err := srv.hist.FilteredSource(ctx, s, s.keepalive)
	if err != nil {
		return err
	}
	st, err := followLog(src, s.c.filterFunctions)
	src.File.Close()
	if err != nil {
		s.logger.Warn("filtered sync refused", "offset", src.At-1, "err", err)
		return s.refuse(fmt.Sprintf("ERR the relay cannot give an RDB as of offset %d: %v; run this against the master or a replica instead", src.At-1, err))
	}
	h, libs := st.header, st.libraries()
	aux := []string{"redis-ver", h.RedisVer(), "redis-bits", "64", "ctime", strconv.FormatInt(time.Now().Unix(), 10),
		"repl-stream-db", strconv.Itoa(st.db), "repl-id", src.ReplID, "repl-offset", strconv.FormatInt(src.At-1, 10), "aof-base", "0"}
	if bits, ok := h.Aux["redis-bits"]; ok {
		aux[3] = bits
	}
	rdb := rdbparse.AppendFunctionsRDB(nil, h.Version, aux, libs)

	srv.stats.fullSyncsServed.Add(1)
	s.logger.Info("filtered full resync", "replid", src.ReplID, "offset", src.At-1, "libraries", len(libs), "bytes", len(rdb))
	if !s.legacy {
		if err := s.write(fmt.Appendf(nil, "+FULLRESYNC %s %d\r\n", src.ReplID, src.At-1)); err != nil {
			return err
		}
	}
	p := replstream.Payload{Size: -1, Mark: []byte(replstream.RandomHex40())}
	s.state.Store(StateSendBulk)
	s.bulkTotal.Store(int64(len(rdb)))
	for _, b := range [][]byte{p.Preamble(), rdb, p.Mark} {
		if err := s.write(b); err != nil {
			return err
		}
	}
	s.bulkSent.Store(int64(len(rdb)))
	if s.c.rdbOnly {
		return &closeError{reason: ReasonRDBOnlyDone}
	}
	cur, err := src.Log.Cursor(src.At)
	if err != nil {
		return err
	}
	if err := s.waitFirstAck(ctx); err != nil {
		return err
	}
	if !srv.hist.GoOnline(s, src.ReplID) {
		return &closeError{reason: ReasonReplIDChanged}
	}
	if s.legacy {
		// Redis starts the stream of every full sync with a SELECT of the
		// database the next write goes to (replicationSetupSlaveForFullResync
		// forgets the last one selected). The relay starts mid-stream, past
		// the last SELECT, so it sends that SELECT itself; a SYNC client has
		// no offsets for the extra bytes to disturb. redis-cli --replica
		// needs it: it takes the first command after its ACK as the reply
		// to that ACK, and would swallow a write.
		if err := s.write(resp.AppendCommand(nil, "SELECT", strconv.Itoa(st.db))); err != nil {
			return err
		}
	}
	return s.stream(ctx, cur)
}

// refuse answers the sync request with an error line and ends the session.
func (s *session) refuse(msg string) error {
	if err := s.write(resp.AppendError(nil, msg)); err != nil {
		return err
	}
	return &closeError{reason: ReasonRefused, err: fmt.Errorf("%s", msg)}
}

// streamState is what a filtered sync needs to know of the dataset as of
// offset src.At-1: the snapshot's header, the database the stream has
// selected, and (when asked for) the function libraries.
type streamState struct {
	header *rdbparse.Header
	db     int
	libs   libraries // nil when not asked for
}

func (st *streamState) libraries() []string {
	out := make([]string, 0, len(st.libs))
	for _, code := range st.libs {
		out = append(out, code)
	}
	return out
}

// followLog reads the snapshot's head (its header and, with withLibraries,
// its libraries) and walks the log from the snapshot to src.At: the last
// SELECT in it names the database selected at src.At (the snapshot's
// repl-stream-db without one), and every FUNCTION command in it changes
// the libraries as it did on the master.
func followLog(src history.FilterSource, withLibraries bool) (*streamState, error) {
	codes, h, err := rdbparse.Libraries(src.File)
	if err != nil && !(h != nil && !withLibraries) {
		return nil, fmt.Errorf("read the snapshot's head: %w", err)
	}
	st := &streamState{header: h}
	if db, ok := h.ReplStreamDB(); ok {
		st.db = db
	}
	if withLibraries {
		st.libs = libraries{}
		for _, code := range codes {
			if err := st.libs.load(code); err != nil {
				return nil, fmt.Errorf("the snapshot's libraries: %w", err)
			}
		}
	}
	// The framer sees a command's name and the start of its first
	// argument only; the FUNCTION commands are read whole afterwards.
	var spans [][2]int64
	var frameErr error
	_, err = src.Log.Frame(src.Snap.Offset+1, src.At, func(c *replstream.Command) {
		switch {
		case bytes.EqualFold(c.Name, []byte("select")):
			db, err := strconv.Atoi(string(c.Arg1))
			if err != nil || db < 0 {
				frameErr = fmt.Errorf("SELECT %q at offset %d", c.Arg1, c.Offset)
			}
			st.db = db
		case withLibraries && bytes.EqualFold(c.Name, []byte("function")):
			spans = append(spans, [2]int64{c.Offset, c.Len})
		}
	})
	if err == nil {
		err = frameErr
	}
	if err != nil {
		return nil, fmt.Errorf("read the log after the snapshot: %w", err)
	}
	for _, sp := range spans {
		args, err := readLogCommand(src.Log, sp[0], sp[1])
		if err != nil {
			return nil, fmt.Errorf("read the command at offset %d: %w", sp[0], err)
		}
		if err := st.libs.apply(args, h.Version); err != nil {
			return nil, fmt.Errorf("FUNCTION at offset %d: %w", sp[0], err)
		}
	}
	return st, nil
}

// readLogCommand reads the n bytes of the command at off and splits it
// into its arguments.
func readLogCommand(log *replstream.Log, off, n int64) ([][]byte, error) {
	cur, err := log.Cursor(off)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, n)
	for got := 0; got < len(buf); {
		k, err := cur.Read(context.Background(), buf[got:])
		if err != nil {
			return nil, err
		}
		got += k
	}
	return resp.ReadCommand(bufio.NewReader(bytes.NewReader(buf)))
}

// libraries maps a function library's name to its code.
type libraries map[string]string

// load adds or replaces a library.
func (l libraries) load(code string) error {
	name, err := libraryName(code)
	if err != nil {
		return err
	}
	l[name] = code
	return nil
}

// apply changes the libraries as a FUNCTION command from the stream did on
// the master. The master propagates only what succeeded, so a LOAD of a
// library that exists had REPLACE and a RESTORE without REPLACE found no
// clash; neither needs checking again.
func (l libraries) apply(args [][]byte, rdbVersion int) error {
	if len(args) < 2 {
		return fmt.Errorf("%d arguments", len(args))
	}
	sub := strings.ToLower(string(args[1]))
	switch {
	case sub == "load" && len(args) >= 3:
		return l.load(string(args[len(args)-1]))
	case sub == "delete" && len(args) == 3:
		name := string(args[2])
		if _, ok := l[name]; ok {
			delete(l, name)
			return nil
		}
		for n := range l {
			if strings.EqualFold(n, name) {
				delete(l, n)
				return nil
			}
		}
		return fmt.Errorf("DELETE of library %q, which the relay does not know", resp.Excerpt(args[2], 64))
	case sub == "flush":
		clear(l)
		return nil
	case sub == "restore" && len(args) >= 3:
		codes, err := rdbparse.DumpLibraries(args[2], rdbVersion)
		if err != nil {
			return err
		}
		if len(args) >= 4 && strings.EqualFold(string(args[3]), "flush") {
			clear(l)
		}
		for _, code := range codes {
			if err := l.load(code); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("FUNCTION %s with %d arguments is not followed", resp.Excerpt(args[1], 32), len(args))
}

// libraryName reads a library's name from the first line of its code,
// "#!<engine> name=<name>" (source: functionExtractLibMetaData).
func libraryName(code string) (string, error) {
	first, _, _ := strings.Cut(code, "\n")
	fields := strings.Fields(first)
	if len(fields) == 0 || !strings.HasPrefix(fields[0], "#!") {
		return "", fmt.Errorf("library code without a #! line")
	}
	if strings.ContainsAny(first, "\"'\\") {
		return "", fmt.Errorf("quoted library metadata is not followed")
	}
	var name string
	for _, f := range fields[1:] {
		v, ok := strings.CutPrefix(f, "name=")
		if !ok {
			return "", fmt.Errorf("library metadata %q not understood", f)
		}
		name = v
	}
	if name == "" {
		return "", fmt.Errorf("library code without a name")
	}
	return name, nil
}
