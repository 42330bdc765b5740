package rdbparse

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/hdt3213/rdb/core"
	"github.com/hdt3213/rdb/model"
)

// Summary describes one RDB snapshot.
type Summary struct {
	Magic         string            // "REDIS" or "VALKEY"
	Version       int               // RDB format version
	Aux           map[string]string // aux fields
	ReplID        string            // aux "repl-id", "" when absent
	ReplOffset    int64             // aux "repl-offset" when HasReplOffset
	HasReplOffset bool              //
	ReplStreamDB  int               // aux "repl-stream-db", -1 when absent
	RedisVer      string            // aux "redis-ver" (or "valkey-ver")

	Size      int64                  // bytes read, including any drained tail
	Keys      int64                  // keys in all databases
	Expires   int64                  // keys that carry an expiry
	DBs       []DBSummary            // per database, by number
	Types     map[string]TypeSummary // per type name: string, list, set, zset, hash, stream, module
	Modules   map[string]int64       // module keys per module type name
	Functions int                    // function libraries

	Checksum    string // ChecksumOK, ChecksumMismatch, ChecksumDisabled or ChecksumMissing; "" after an error
	StoredCRC   uint64 // checksum found after the EOF opcode
	ComputedCRC uint64 // CRC-64 of the bytes before it

	// Complete is true when the whole file was framed up to and including
	// the EOF opcode.
	Complete bool
	// Unparsed says what was not understood or not decoded, "" when every
	// record was.
	Unparsed string
}

// DBSummary counts the keys of one database.
type DBSummary struct {
	DB          int
	Keys        int64
	Expires     int64
	HintKeys    uint64 // table size hints from the RESIZEDB record, if any
	HintExpires uint64
}

// TypeSummary aggregates the keys of one type.
type TypeSummary struct {
	Count int64 // keys
	// Bytes is the encoded size of those keys in the file: opcode, key,
	// value and any expiry or eviction prefix.
	Bytes int64
	// Elements is the number of members (list items, set members, hash
	// fields, sorted set entries, stream entries) as decoded by the library.
	Elements int64
	// MemBytes is the library's estimate of the memory the values take in a
	// running server. Both Elements and MemBytes cover only decoded keys.
	MemBytes int64
}

// ParseFile summarises the RDB file at path. Its size is known up front, so
// lengths that run past the end of the file are rejected as soon as they
// are read. See Parse for the rest.
func ParseFile(path string) (*Summary, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("rdbparse: %w", err)
	}
	defer f.Close()
	size := int64(-1)
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
		size = st.Size()
	}
	return ParseSized(f, size)
}

// Parse summarises an RDB snapshot read from r in a single pass, checking
// its CRC-64 on the same bytes. r may be a stream that blocks until more of
// the snapshot arrives; it must end where the snapshot ends, since data
// after the checksum is reported as ErrTrailingData.
//
// Records the library cannot decode, or types this package cannot frame,
// do not make Parse fail: the Summary then carries everything read, and
// Unparsed says what was skipped. In that case the remaining bytes are
// still read through the checksum, which is judged on the file's last nine
// bytes. Input that is cut short or cannot be framed yields ErrBadMagic,
// ErrTruncated or ErrCorrupt (test with errors.Is); the Summary returned
// alongside such an error, non-nil once the magic was read, holds what was
// counted up to that point.
func Parse(r io.Reader) (*Summary, error) {
	return ParseSized(r, -1)
}

// ParseSized is Parse for a snapshot whose exact length is known in advance,
// such as the $<length> of a disk-based full sync. A negative size means
// unknown.
func ParseSized(r io.Reader, size int64) (*Summary, error) {
	return ParseWith(r, size, Options{Decode: true})
}

// Options select how much work a parse does.
type Options struct {
	// Decode hands every record to the hdt3213/rdb decoder, for element
	// counts and memory estimates per type. Without it the records are only
	// framed and counted (keys, expiries, databases, functions, bytes per
	// type), at a fraction of the CPU and allocation.
	Decode bool
	// SkipChecksum frames the trailer but leaves the CRC-64 to the caller
	// (who computed it already); Summary.Checksum is then ChecksumUnchecked.
	SkipChecksum bool
}

// ParseWith is ParseSized with a choice of work; see Options.
func ParseWith(r io.Reader, size int64, opt Options) (*Summary, error) {
	p := &parser{check: NewChecker(), dbs: map[int]*DBSummary{}, decode: opt.Decode}
	p.check.noCRC = opt.SkipChecksum
	src := bufio.NewReaderSize(io.TeeReader(r, p.check), 64<<10)
	p.w = newWalker(src, size)
	return p.run(size)
}

// parser drives one Parse call: the walker frames each record, and the
// records are then handed on, unchanged, to the hdt3213/rdb decoder.
type parser struct {
	w     *walker
	check *Checker
	h     *Header
	sum   *Summary
	dbs   map[int]*DBSummary
	db    int

	decode  bool      // use the decoder at all (Options.Decode)
	forward bool      // records go on to the decoder
	out     []byte    // framed bytes the decoder has yet to read
	pending []keyInfo // keys forwarded but not yet delivered, from head on
	head    int
	decoded int64 // keys the decoder delivered

	done  bool   // the EOF opcode and checksum were framed
	stop  string // why framing stopped early on something not understood
	fatal error  // why framing failed
}

// keyInfo identifies a key handed to the decoder, for error messages.
type keyInfo struct {
	index int64
	db    int
	typ   byte
	n     uint8
	name  [40]byte // the start of the key
}

func (k *keyInfo) String() string {
	s := strings.ToValidUTF8(string(k.name[:k.n]), "?")
	if k.n == uint8(len(k.name)) {
		s += "..."
	}
	return s
}

// errHalted is what the decoder reads once the walker has stopped.
var errHalted = errors.New("rdbparse: input halted")

func (p *parser) run(size int64) (sum *Summary, err error) {
	defer func() {
		if v := recover(); v != nil {
			sum, err = p.sum, fmt.Errorf("%w at byte %d: internal error: %v", ErrCorrupt, p.w.off, v)
		}
	}()
	h, err := p.w.readMagic()
	if err != nil {
		return nil, err
	}
	p.h = h
	p.sum = &Summary{
		Magic:        h.Magic,
		Version:      h.Version,
		Aux:          h.Aux,
		ReplStreamDB: -1,
		Types:        map[string]TypeSummary{},
		Modules:      map[string]int64{},
	}
	switch {
	case !p.decode:
		// Framing and counting only.
	case decoderSupports(h):
		p.forward = true
		p.out = p.w.rec
		libErr := core.NewDecoder(feed{p}).Parse(p.onObject)
		if libErr != nil && p.fatal == nil && p.stop == "" {
			p.noteDecoderFailure(libErr)
		}
		p.forward, p.out = false, nil
	default:
		p.addUnparsed(fmt.Sprintf("the decoder does not read %s version %d; keys were framed and counted but not decoded", h.Magic, h.Version))
	}
	for !p.done && p.fatal == nil && p.stop == "" {
		p.step()
	}
	return p.finish(size)
}

// decoderSupports mirrors the version range accepted by hdt3213/rdb v1.3.2.
func decoderSupports(h *Header) bool {
	if h.Magic == "VALKEY" {
		return h.Version == 80
	}
	return h.Version >= 1 && h.Version <= 12
}

func (p *parser) finish(size int64) (*Summary, error) {
	s := p.sum
	p.fillSummary()
	if p.fatal != nil {
		s.Size = p.w.off
		return s, p.fatal
	}
	if p.stop != "" {
		p.addUnparsed(p.stop)
		if _, err := io.Copy(io.Discard, p.w.src); err != nil {
			s.Size = p.check.Size()
			return s, fmt.Errorf("rdbparse: read failed while draining: %w", err)
		}
		p.setChecksum(p.check.Result())
		if s.Checksum == ChecksumMissing && p.w.version >= 5 {
			return s, fmt.Errorf("%w: %s, and the data does not end in an EOF opcode and checksum", ErrCorrupt, p.stop)
		}
		return s, nil
	}
	s.Complete = true
	if _, err := p.w.src.ReadByte(); err == nil {
		n, _ := io.Copy(io.Discard, p.w.src)
		s.Size = p.check.Size()
		return s, fmt.Errorf("%w: %d bytes follow the checksum at byte %d", ErrTrailingData, n+1, p.w.off)
	} else if !errors.Is(err, io.EOF) {
		s.Size = p.w.off
		return s, p.w.readErr(err)
	}
	if p.w.version < 5 {
		s.Size = p.check.Size()
		s.Checksum = ChecksumMissing
	} else {
		p.setChecksum(p.check.Result())
	}
	if size >= 0 && s.Size != size {
		return s, fmt.Errorf("%w: the snapshot ends at byte %d of the %d announced", ErrCorrupt, s.Size, size)
	}
	return s, nil
}

func (p *parser) setChecksum(r CheckResult) {
	p.sum.Size = r.Size
	p.sum.Checksum = r.Status
	p.sum.StoredCRC, p.sum.ComputedCRC = r.Stored, r.Computed
}

// fillSummary copies the header fields and the per-database counts.
func (p *parser) fillSummary() {
	s := p.sum
	s.ReplID = p.h.ReplID()
	s.ReplOffset, s.HasReplOffset = p.h.ReplOffset()
	if db, ok := p.h.ReplStreamDB(); ok {
		s.ReplStreamDB = db
	}
	s.RedisVer = p.h.RedisVer()
	s.DBs = s.DBs[:0]
	for _, d := range p.dbs {
		s.DBs = append(s.DBs, *d)
	}
	sort.Slice(s.DBs, func(i, j int) bool { return s.DBs[i].DB < s.DBs[j].DB })
}

func (p *parser) addUnparsed(msg string) {
	if p.sum.Unparsed == "" {
		p.sum.Unparsed = msg
	} else {
		p.sum.Unparsed += "; " + msg
	}
}

func (p *parser) noteDecoderFailure(libErr error) {
	msg := fmt.Sprintf("the decoder stopped after %d keys: %v", p.decoded, libErr)
	if p.head < len(p.pending) {
		k := &p.pending[p.head]
		msg = fmt.Sprintf("the decoder failed at key %d (%q, type %d, db %d): %v", k.index, k.String(), k.typ, k.db, libErr)
	}
	p.addUnparsed(msg + "; later keys were framed and counted but not decoded")
}

// feed is the io.Reader the decoder pulls from. Each time it runs dry it
// frames one more record.
type feed struct{ p *parser }

func (f feed) Read(b []byte) (int, error) {
	p := f.p
	for len(p.out) == 0 {
		switch {
		case p.fatal != nil || p.stop != "":
			return 0, errHalted
		case p.done:
			return 0, io.EOF
		}
		p.step()
	}
	n := copy(b, p.out)
	p.out = p.out[n:]
	return n, nil
}

// onObject receives each key the decoder built.
func (p *parser) onObject(o model.RedisObject) bool {
	p.decoded++
	if p.head < len(p.pending) {
		p.head++
		if p.head == len(p.pending) {
			p.pending, p.head = p.pending[:0], 0
		}
	}
	name := o.GetType()
	t := p.sum.Types[name]
	t.MemBytes += int64(o.GetSize())
	if st, ok := o.(*model.StreamObject); ok {
		t.Elements += int64(st.Length)
	} else {
		t.Elements += int64(o.GetElemCount())
	}
	p.sum.Types[name] = t
	return true
}

// step frames the next record, handing it to the decoder if forwarding.
func (p *parser) step() {
	defer func() {
		if v := recover(); v != nil {
			p.fatal = fmt.Errorf("%w at byte %d: internal error: %v", ErrCorrupt, p.w.off, v)
		}
	}()
	p.w.reset()
	err := p.record()
	if err == nil {
		return
	}
	var u *unsupportedError
	if errors.As(err, &u) {
		p.stop = fmt.Sprintf("%s at byte %d, after %d keys; the rest was not framed", u.what, u.at, p.sum.Keys)
		return
	}
	p.fatal = err
}

func (p *parser) emit() {
	if p.forward {
		p.out = p.w.rec
	}
}

func (p *parser) dbEntry(db int) *DBSummary {
	d, ok := p.dbs[db]
	if !ok {
		d = &DBSummary{DB: db}
		p.dbs[db] = d
	}
	return d
}

func (p *parser) record() error {
	w := p.w
	op, err := w.byte1()
	if err != nil {
		return err
	}
	switch op {
	case opEOF:
		if w.version >= 5 {
			if _, err := w.take(8); err != nil {
				return err
			}
		}
		p.done = true
	case opSelectDB:
		n, err := w.count()
		if err != nil {
			return err
		}
		if n > math.MaxInt32 {
			return w.corrupt("database number %d", n)
		}
		p.db = int(n)
		p.dbEntry(p.db)
	case opResizeDB:
		keys, err := w.count()
		if err != nil {
			return err
		}
		expires, err := w.count()
		if err != nil {
			return err
		}
		d := p.dbEntry(p.db)
		d.HintKeys, d.HintExpires = keys, expires
	case opAux:
		if err := w.readAux(p.h); err != nil {
			return err
		}
	case opFunction2:
		if _, err := w.readString(0); err != nil {
			return err
		}
		p.sum.Functions++
	case opModuleAux:
		// Framed here and kept from the decoder, which would print a
		// notice for every module it has no handler for.
		if _, err := w.count(); err != nil {
			return err
		}
		return w.moduleData()
	case opSlotInfo:
		if !w.valkey {
			return w.unsupported("opcode 244 in a Redis file")
		}
		for i := 0; i < 3; i++ {
			if _, err := w.count(); err != nil {
				return err
			}
		}
	case opSlotImport:
		if !w.valkey {
			return w.unsupported("key metadata (opcode 243, Redis 8)")
		}
		if _, err := w.readString(0); err != nil {
			return err
		}
		err := w.repeat(func() error {
			if _, err := w.count(); err != nil {
				return err
			}
			_, err := w.count()
			return err
		})
		if err != nil {
			return err
		}
	case opFunctionPreGA:
		return w.unsupported("function library in the Redis 7.0 release candidate format (opcode 246)")
	default:
		return p.key(op)
	}
	p.emit()
	return nil
}

// key frames a key record: optional expiry and eviction prefixes, the type
// byte, the key and the value.
func (p *parser) key(op byte) error {
	w := p.w
	expires := false
	for prefix := true; prefix; {
		var err error
		switch op {
		case opExpireMs:
			_, err = w.take(8)
			expires = true
		case opExpireSec:
			_, err = w.take(4)
			expires = true
		case opIdle:
			_, err = w.count()
		case opFreq:
			_, err = w.byte1()
		default:
			prefix = false
			continue
		}
		if err != nil {
			return err
		}
		if op, err = w.byte1(); err != nil {
			return err
		}
	}
	if op >= opSlotImport {
		return w.corrupt("opcode 0x%02x where a key should follow its expiry or eviction data", op)
	}
	name := typeName(op)
	if name == "" {
		return w.unsupported("unknown value type %d", op)
	}
	ks, err := w.readString(0)
	if err != nil {
		return err
	}
	s := p.sum
	var info keyInfo
	if p.forward {
		info = keyInfo{index: s.Keys + 1, db: p.db, typ: op}
		info.n = uint8(copy(info.name[:], keyText(w, ks)))
	}
	if err := w.skipValue(op); err != nil {
		return err
	}
	d := p.dbEntry(p.db)
	d.Keys++
	s.Keys++
	if expires {
		d.Expires++
		s.Expires++
	}
	t := s.Types[name]
	t.Count++
	t.Bytes += int64(len(w.rec))
	s.Types[name] = t
	if op == typeModule2 {
		// Counted here; the decoder never sees module values (see above).
		s.Modules[w.module]++
		return nil
	}
	if p.forward {
		p.pending = append(p.pending, info)
	}
	p.emit()
	return nil
}

// keyText returns the key's bytes as stored, for messages; it does not
// allocate for raw keys.
func keyText(w *walker, s strRef) []byte {
	switch s.kind {
	case strInt:
		return strconv.AppendInt(nil, s.ival, 10)
	case strLZF:
		return []byte("(compressed key)")
	}
	return w.rec[s.start:s.end]
}
