package rdbparse

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"

	"github.com/hdt3213/rdb/lzf"
)

// RDB opcodes, the byte values that introduce records other than keys.
const (
	opSlotImport    = 0xF3 // Valkey slot import state; Redis 8 key metadata
	opSlotInfo      = 0xF4 // Valkey slot sizes
	opFunction2     = 0xF5 // a function library (Redis 7.0 GA onwards)
	opFunctionPreGA = 0xF6 // a function library in the 7.0 release candidate format
	opModuleAux     = 0xF7 // module auxiliary data
	opIdle          = 0xF8 // LRU idle time of the next key
	opFreq          = 0xF9 // LFU counter of the next key
	opAux           = 0xFA // aux field
	opResizeDB      = 0xFB // hash table size hints for the current db
	opExpireMs      = 0xFC // expiry of the next key, milliseconds
	opExpireSec     = 0xFD // expiry of the next key, seconds (old files)
	opSelectDB      = 0xFE // switch database
	opEOF           = 0xFF // end of data, checksum follows
)

// Value type bytes.
const (
	typeString         = 0
	typeList           = 1
	typeSet            = 2
	typeZset           = 3
	typeHash           = 4
	typeZset2          = 5
	typeModule         = 6
	typeModule2        = 7
	typeHashZipmap     = 9
	typeListZiplist    = 10
	typeSetIntset      = 11
	typeZsetZiplist    = 12
	typeHashZiplist    = 13
	typeListQuicklist  = 14
	typeStreamLP       = 15
	typeHashListpack   = 16
	typeZsetListpack   = 17
	typeListQuicklist2 = 18
	typeStreamLP2      = 19
	typeSetListpack    = 20
	typeStreamLP3      = 21
	typeHashMetaPreGA  = 22 // Redis 7.4 RC hash with field TTLs; Valkey 9 HASH_2
	typeHashLPExPreGA  = 23
	typeHashMeta       = 24
	typeHashLPEx       = 25
)

// maxLZFRatio bounds how much an LZF block can expand: the longest back
// reference is three bytes long and produces 264 bytes.
const maxLZFRatio = 88

// typeName maps a value type byte to the type name used in Summary.Types.
// The names match those of the hdt3213/rdb decoder.
func typeName(t byte) string {
	switch t {
	case typeString:
		return "string"
	case typeList, typeListZiplist, typeListQuicklist, typeListQuicklist2:
		return "list"
	case typeSet, typeSetIntset, typeSetListpack:
		return "set"
	case typeZset, typeZset2, typeZsetZiplist, typeZsetListpack:
		return "zset"
	case typeHash, typeHashZipmap, typeHashZiplist, typeHashListpack,
		typeHashMetaPreGA, typeHashLPExPreGA, typeHashMeta, typeHashLPEx:
		return "hash"
	case typeStreamLP, typeStreamLP2, typeStreamLP3:
		return "stream"
	case typeModule, typeModule2:
		return "module"
	}
	return ""
}

// unsupportedError marks input that may be valid but that this package (and
// the decoder behind it) does not know how to frame: a value type or opcode
// from a newer server, or an old module format that cannot be skipped
// without the module. Parse turns it into Summary.Unparsed.
type unsupportedError struct {
	at   int64
	what string
}

func (e *unsupportedError) Error() string {
	return fmt.Sprintf("rdbparse: %s at byte %d", e.what, e.at)
}

// walker frames an RDB stream record by record. It understands the outer
// layout of every value type (which lengths, strings and fixed width fields
// follow each other), enough to find where each record ends and to check
// every size the decoder would later trust, without building the values.
// The raw bytes of the current record collect in rec; they grow only as
// data actually arrives, never by a declared length.
type walker struct {
	src     *bufio.Reader
	off     int64 // bytes consumed from src
	limit   int64 // total size of the input when known, else -1
	rec     []byte
	magic   string
	version int
	valkey  bool
	module  string // type name of the latest module value framed
}

func newWalker(src *bufio.Reader, limit int64) *walker {
	return &walker{src: src, limit: limit}
}

// reset starts a new record, dropping a large buffer left by a big one.
func (w *walker) reset() {
	if cap(w.rec) > 4<<20 {
		w.rec = nil
	}
	w.rec = w.rec[:0]
}

// readErr turns an error from src into this package's vocabulary.
func (w *walker) readErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w at byte %d", ErrTruncated, w.off)
	}
	return fmt.Errorf("rdbparse: read failed at byte %d: %w", w.off, err)
}

func (w *walker) corrupt(format string, args ...any) error {
	return fmt.Errorf("%w at byte %d: %s", ErrCorrupt, w.off, fmt.Sprintf(format, args...))
}

func (w *walker) unsupported(format string, args ...any) error {
	return &unsupportedError{at: w.off, what: fmt.Sprintf(format, args...)}
}

func (w *walker) byte1() (byte, error) {
	b, err := w.src.ReadByte()
	if err != nil {
		return 0, w.readErr(err)
	}
	w.off++
	w.rec = append(w.rec, b)
	return b, nil
}

// take appends the next n bytes to rec and returns where they start.
func (w *walker) take(n uint64) (int, error) {
	if w.limit >= 0 {
		left := max(w.limit-w.off, 0)
		if n > uint64(left) {
			return 0, fmt.Errorf("%w at byte %d: %d bytes declared, %d left", ErrTruncated, w.off, n, left)
		}
	}
	start := len(w.rec)
	for n > 0 {
		chunk := int(min(n, 1<<16))
		if cap(w.rec)-len(w.rec) < chunk {
			grown := make([]byte, len(w.rec), 2*cap(w.rec)+chunk)
			copy(grown, w.rec)
			w.rec = grown
		}
		buf := w.rec[len(w.rec) : len(w.rec)+chunk]
		got, err := io.ReadFull(w.src, buf)
		w.off += int64(got)
		w.rec = w.rec[:len(w.rec)+got]
		if err != nil {
			return 0, w.readErr(err)
		}
		n -= uint64(chunk)
	}
	return start, nil
}

// readLen reads a length-encoded number. special reports the 11xxxxxx form,
// which introduces an encoded string rather than a length; v is then the
// encoding number.
func (w *walker) readLen() (v uint64, special bool, err error) {
	b, err := w.byte1()
	if err != nil {
		return 0, false, err
	}
	switch b >> 6 {
	case 0:
		return uint64(b & 0x3F), false, nil
	case 1:
		b2, err := w.byte1()
		if err != nil {
			return 0, false, err
		}
		return uint64(b&0x3F)<<8 | uint64(b2), false, nil
	case 2:
		var size uint64
		switch b {
		case 0x80:
			size = 4
		case 0x81:
			size = 8
		default:
			return 0, false, w.corrupt("invalid length prefix 0x%02x", b)
		}
		at, err := w.take(size)
		if err != nil {
			return 0, false, err
		}
		if size == 4 {
			return uint64(binary.BigEndian.Uint32(w.rec[at:])), false, nil
		}
		return binary.BigEndian.Uint64(w.rec[at:]), false, nil
	}
	return uint64(b & 0x3F), true, nil
}

// count reads a plain length used as an element count.
func (w *walker) count() (uint64, error) {
	v, special, err := w.readLen()
	if err != nil {
		return 0, err
	}
	if special {
		return 0, w.corrupt("encoded string where a length belongs")
	}
	return v, nil
}

// strRef locates a string inside rec.
type strRef struct {
	kind       byte // strRaw, strInt or strLZF
	start, end int  // payload: the bytes, the compressed bytes, or unused
	ival       int64
	outLen     int
}

const (
	strRaw = iota
	strInt
	strLZF
)

// readString reads a string in any of its encodings. maxLen, when positive,
// caps the decoded length.
func (w *walker) readString(maxLen uint64) (strRef, error) {
	v, special, err := w.readLen()
	if err != nil {
		return strRef{}, err
	}
	if !special {
		if maxLen > 0 && v > maxLen {
			return strRef{}, w.corrupt("string of %d bytes exceeds the cap of %d", v, maxLen)
		}
		at, err := w.take(v)
		if err != nil {
			return strRef{}, err
		}
		return strRef{kind: strRaw, start: at, end: len(w.rec)}, nil
	}
	switch v {
	case 0, 1, 2:
		width := uint64(1) << v
		at, err := w.take(width)
		if err != nil {
			return strRef{}, err
		}
		var x int64
		switch width {
		case 1:
			x = int64(int8(w.rec[at]))
		case 2:
			x = int64(int16(binary.LittleEndian.Uint16(w.rec[at:])))
		default:
			x = int64(int32(binary.LittleEndian.Uint32(w.rec[at:])))
		}
		return strRef{kind: strInt, ival: x}, nil
	case 3:
		inLen, err := w.count()
		if err != nil {
			return strRef{}, err
		}
		outLen, err := w.count()
		if err != nil {
			return strRef{}, err
		}
		if (outLen+maxLZFRatio-1)/maxLZFRatio > inLen || outLen > math.MaxInt64/2 {
			return strRef{}, w.corrupt("lzf string claims %d bytes from %d compressed", outLen, inLen)
		}
		if maxLen > 0 && outLen > maxLen {
			return strRef{}, w.corrupt("string of %d bytes exceeds the cap of %d", outLen, maxLen)
		}
		at, err := w.take(inLen)
		if err != nil {
			return strRef{}, err
		}
		return strRef{kind: strLZF, start: at, end: len(w.rec), outLen: int(outLen)}, nil
	}
	return strRef{}, w.corrupt("unknown string encoding %d", v)
}

// value returns the decoded bytes of a string read into the current record.
// Raw strings are returned as a view into rec.
func (w *walker) value(s strRef) ([]byte, error) {
	switch s.kind {
	case strInt:
		return strconv.AppendInt(nil, s.ival, 10), nil
	case strLZF:
		in := w.rec[s.start:s.end]
		if len(in) == 0 {
			if s.outLen == 0 {
				return []byte{}, nil
			}
			return nil, w.corrupt("empty lzf block")
		}
		out, err := lzf.Decompress(in, len(in), s.outLen)
		if err != nil || len(out) != s.outLen {
			return nil, w.corrupt("lzf block does not decompress to its declared %d bytes", s.outLen)
		}
		return out, nil
	}
	return w.rec[s.start:s.end], nil
}

// readMagic reads and checks the nine byte signature.
func (w *walker) readMagic() (*Header, error) {
	at, err := w.take(9)
	if err != nil {
		if errors.Is(err, ErrTruncated) {
			return nil, fmt.Errorf("%w: only %d bytes", ErrBadMagic, w.off)
		}
		return nil, err
	}
	magic, version, err := parseMagic(w.rec[at : at+9])
	if err != nil {
		return nil, err
	}
	w.magic, w.version, w.valkey = magic, version, magic == "VALKEY"
	return &Header{Magic: magic, Version: version, Aux: map[string]string{}, Len: 9}, nil
}

// readAux reads the body of an aux record (the opcode already consumed)
// into h.Aux.
func (w *walker) readAux(h *Header) error {
	if len(h.Aux) >= MaxAuxFields {
		return w.corrupt("more than %d aux fields", MaxAuxFields)
	}
	ks, err := w.readString(MaxAuxLen)
	if err != nil {
		return err
	}
	vs, err := w.readString(MaxAuxLen)
	if err != nil {
		return err
	}
	k, err := w.value(ks)
	if err != nil {
		return err
	}
	key := string(k)
	v, err := w.value(vs)
	if err != nil {
		return err
	}
	h.Aux[key] = string(v)
	return nil
}

// skipValue frames the value of a key of type t.
func (w *walker) skipValue(t byte) error {
	switch t {
	case typeString, typeHashZipmap, typeListZiplist, typeZsetZiplist,
		typeHashZiplist, typeHashListpack, typeZsetListpack, typeSetListpack:
		_, err := w.readString(0)
		return err
	case typeList, typeSet:
		return w.repeat(func() error { _, err := w.readString(0); return err })
	case typeHash:
		return w.repeat(w.stringPair)
	case typeZset:
		return w.repeat(func() error {
			if _, err := w.readString(0); err != nil {
				return err
			}
			return w.literalDouble()
		})
	case typeZset2:
		return w.repeat(func() error {
			if _, err := w.readString(0); err != nil {
				return err
			}
			_, err := w.take(8)
			return err
		})
	case typeSetIntset:
		return w.intset()
	case typeListQuicklist:
		return w.repeat(func() error { _, err := w.readString(0); return err })
	case typeListQuicklist2:
		return w.repeat(func() error {
			container, err := w.count()
			if err != nil {
				return err
			}
			if container != 1 && container != 2 {
				return w.corrupt("unknown quicklist container %d", container)
			}
			_, err = w.readString(0)
			return err
		})
	case typeStreamLP, typeStreamLP2, typeStreamLP3:
		return w.stream(t)
	case typeModule2:
		id, err := w.count()
		if err != nil {
			return err
		}
		w.module = moduleTypeName(id)
		return w.moduleData()
	case typeHashMetaPreGA:
		if w.valkey {
			return w.repeat(func() error {
				if err := w.stringPair(); err != nil {
					return err
				}
				_, err := w.take(8)
				return err
			})
		}
		return w.repeat(w.ttlField)
	case typeHashMeta:
		if _, err := w.take(8); err != nil {
			return err
		}
		return w.repeat(w.ttlField)
	case typeHashLPEx:
		if _, err := w.take(8); err != nil {
			return err
		}
		_, err := w.readString(0)
		return err
	case typeHashLPExPreGA:
		_, err := w.readString(0)
		return err
	case typeModule:
		return w.unsupported("module value in the pre-RDB 8 format (type 6)")
	}
	return w.unsupported("unknown value type %d", t)
}

// repeat reads a count and then that many elements. Each element consumes
// at least one byte, so a bogus count fails on the data rather than on
// memory.
func (w *walker) repeat(elem func() error) error {
	n, err := w.count()
	if err != nil {
		return err
	}
	for ; n > 0; n-- {
		if err := elem(); err != nil {
			return err
		}
	}
	return nil
}

func (w *walker) stringPair() error {
	if _, err := w.readString(0); err != nil {
		return err
	}
	_, err := w.readString(0)
	return err
}

func (w *walker) ttlField() error {
	if _, err := w.count(); err != nil {
		return err
	}
	return w.stringPair()
}

// literalDouble frames a score of the old zset type: a length byte and the
// score as text, or 253..255 for NaN and the infinities.
func (w *walker) literalDouble() error {
	n, err := w.byte1()
	if err != nil {
		return err
	}
	if n >= 253 {
		return nil
	}
	_, err = w.take(uint64(n))
	return err
}

// moduleData frames module-serialised data: typed fields, each introduced
// by an opcode, up to the EOF opcode 0.
func (w *walker) moduleData() error {
	for {
		op, err := w.count()
		if err != nil {
			return err
		}
		switch op {
		case 0:
			return nil
		case 1, 2:
			_, err = w.count()
		case 3:
			_, err = w.take(4)
		case 4:
			_, err = w.take(8)
		case 5:
			_, err = w.readString(0)
		default:
			return w.corrupt("unknown module field opcode %d", op)
		}
		if err != nil {
			return err
		}
	}
}

// intset checks that an intset's element count agrees with its size: the
// decoder sizes its result by that count before looking at the data.
func (w *walker) intset() error {
	s, err := w.readString(0)
	if err != nil {
		return err
	}
	b, err := w.value(s)
	if err != nil {
		return err
	}
	if len(b) < 8 {
		return w.corrupt("intset of %d bytes", len(b))
	}
	width := uint64(binary.LittleEndian.Uint32(b))
	n := uint64(binary.LittleEndian.Uint32(b[4:]))
	if width != 2 && width != 4 && width != 8 {
		return w.corrupt("intset with %d byte integers", width)
	}
	if 8+n*width != uint64(len(b)) {
		return w.corrupt("intset of %d bytes claims %d integers", len(b), n)
	}
	return nil
}

// stream frames a stream value. Beyond the outer layout it checks the
// listpack nodes, whose counts the decoder uses to size allocations.
func (w *walker) stream(t byte) error {
	err := w.repeat(func() error {
		ks, err := w.readString(0)
		if err != nil {
			return err
		}
		k, err := w.value(ks)
		if err != nil {
			return err
		}
		if len(k) != 16 {
			return w.corrupt("stream node key of %d bytes", len(k))
		}
		ns, err := w.readString(0)
		if err != nil {
			return err
		}
		node, err := w.value(ns)
		if err != nil {
			return err
		}
		return w.streamNode(node)
	})
	if err != nil {
		return err
	}
	ids := 3 // length, last id (ms, seq)
	if t != typeStreamLP {
		ids += 5 // first id, max deleted id, entries added
	}
	for ; ids > 0; ids-- {
		if _, err := w.count(); err != nil {
			return err
		}
	}
	return w.repeat(func() error { // consumer groups
		if _, err := w.readString(0); err != nil {
			return err
		}
		ids := 2 // last delivered id
		if t != typeStreamLP {
			ids++ // entries read
		}
		for ; ids > 0; ids-- {
			if _, err := w.count(); err != nil {
				return err
			}
		}
		err := w.repeat(func() error { // group PEL: id, delivery time, count
			if _, err := w.take(24); err != nil {
				return err
			}
			_, err := w.count()
			return err
		})
		if err != nil {
			return err
		}
		return w.repeat(func() error { // consumers
			if _, err := w.readString(0); err != nil {
				return err
			}
			times := uint64(8)
			if t == typeStreamLP3 {
				times = 16
			}
			if _, err := w.take(times); err != nil {
				return err
			}
			return w.repeat(func() error { _, err := w.take(16); return err })
		})
	})
}

// Stream entry flags inside a listpack node.
const (
	streamFlagDeleted    = 1
	streamFlagSameFields = 2
)

// streamNode walks one stream listpack node the way the decoder will, and
// rejects counts that would make it allocate far more than the node's size:
// the master field count, the entry count, and the field map each entry
// gets sized by the master field count.
func (w *walker) streamNode(node []byte) error {
	lp := listpack{b: node, pos: 6}
	if len(node) < 7 {
		return w.corrupt("stream node of %d bytes", len(node))
	}
	size := int64(len(node))
	bad := func(what string) error {
		return w.corrupt("stream node of %d bytes: %s", size, what)
	}
	count, err := lp.int()
	if err != nil {
		return bad(err.Error())
	}
	deleted, err := lp.int()
	if err != nil {
		return bad(err.Error())
	}
	fields, err := lp.int()
	if err != nil {
		return bad(err.Error())
	}
	// Every listpack entry takes at least two bytes, and every stream
	// entry at least four listpack entries.
	if count < 0 || deleted < 0 || fields < 0 || fields > size/2 || count > size/8 || deleted > size/8 || count+deleted > size/8 {
		return bad(fmt.Sprintf("counts %d/%d/%d do not fit", count, deleted, fields))
	}
	for i := int64(0); i <= fields; i++ { // the names and the terminating count
		if err := lp.skip(); err != nil {
			return bad(err.Error())
		}
	}
	var hinted int64 // map slots requested for entries with their own fields
	for i := int64(0); i < count+deleted; i++ {
		flags, err := lp.int()
		if err != nil {
			return bad(err.Error())
		}
		for j := 0; j < 2; j++ { // id delta
			if _, err := lp.int(); err != nil {
				return bad(err.Error())
			}
		}
		n := fields
		pairs := int64(1)
		if flags&streamFlagSameFields == 0 {
			if n, err = lp.int(); err != nil {
				return bad(err.Error())
			}
			if n < 0 || n > size/2 {
				return bad(fmt.Sprintf("entry with %d fields", n))
			}
			pairs = 2
			hinted += fields
		}
		for j := int64(0); j < n*pairs+1; j++ { // fields, values and the terminating count
			if err := lp.skip(); err != nil {
				return bad(err.Error())
			}
		}
	}
	if hinted > 64*size+65536 {
		return bad("master field count out of proportion to the entries")
	}
	return nil
}

// listpack reads entries from a serialised listpack.
type listpack struct {
	b   []byte
	pos int
}

var errListpack = errors.New("malformed listpack entry")

// next decodes one entry: either an integer or a string.
func (lp *listpack) next() (isInt bool, v int64, err error) {
	if lp.pos >= len(lp.b) {
		return false, 0, errListpack
	}
	h := lp.b[lp.pos]
	var head, body int // encoding bytes, then payload bytes
	switch {
	case h < 0x80: // 7 bit unsigned
		head, isInt, v = 1, true, int64(h)
	case h < 0xC0: // string up to 63 bytes
		head, body = 1, int(h&0x3F)
	case h < 0xE0: // 13 bit signed
		if lp.pos+2 > len(lp.b) {
			return false, 0, errListpack
		}
		u := int64(h&0x1F)<<8 | int64(lp.b[lp.pos+1])
		if u >= 1<<12 {
			u -= 1 << 13
		}
		head, isInt, v = 2, true, u
	case h < 0xF0: // string up to 4095 bytes
		if lp.pos+2 > len(lp.b) {
			return false, 0, errListpack
		}
		head, body = 2, int(h&0x0F)<<8|int(lp.b[lp.pos+1])
	case h == 0xF0: // string with a 32 bit length
		if lp.pos+5 > len(lp.b) {
			return false, 0, errListpack
		}
		n := binary.LittleEndian.Uint32(lp.b[lp.pos+1:])
		if uint64(n) > uint64(len(lp.b)) {
			return false, 0, errListpack
		}
		head, body = 5, int(n)
	case h >= 0xF1 && h <= 0xF4: // 16, 24, 32 and 64 bit signed
		width := [...]int{2, 3, 4, 8}[h-0xF1]
		if lp.pos+1+width > len(lp.b) {
			return false, 0, errListpack
		}
		var u uint64
		for i := width - 1; i >= 0; i-- {
			u = u<<8 | uint64(lp.b[lp.pos+1+i])
		}
		shift := 64 - 8*width
		head, isInt, v = 1+width, true, int64(u<<shift)>>shift
	default:
		return false, 0, errListpack
	}
	entry := head + body
	backlen := 5
	switch {
	case entry <= 127:
		backlen = 1
	case entry < 16383:
		backlen = 2
	case entry < 2097151:
		backlen = 3
	case entry < 268435455:
		backlen = 4
	}
	if entry+backlen > len(lp.b)-lp.pos {
		return false, 0, errListpack
	}
	lp.pos += entry + backlen
	return isInt, v, nil
}

func (lp *listpack) skip() error {
	_, _, err := lp.next()
	return err
}

func (lp *listpack) int() (int64, error) {
	isInt, v, err := lp.next()
	if err != nil {
		return 0, err
	}
	if !isInt {
		return 0, errors.New("string where an integer belongs")
	}
	return v, nil
}

// moduleTypeName decodes the nine character module type name packed into
// the upper 54 bits of a module type id.
func moduleTypeName(id uint64) string {
	const charset = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	var name [9]byte
	id >>= 10
	for i := 8; i >= 0; i-- {
		name[i] = charset[id&63]
		id >>= 6
	}
	return string(name[:])
}
