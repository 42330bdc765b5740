package resp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
)

// FuzzReadCommand reads arbitrary bytes as requests, whole and in two
// pieces cut where the fuzzer chooses, and checks that nothing panics,
// every argument is within MaxBulk, every error is a ProtocolError or the
// end of the input, and the cut changes nothing.
func FuzzReadCommand(f *testing.F) {
	for _, seed := range []string{
		"PING\r\n",
		"*1\r\n$4\r\nPING\r\n",
		"\n*3\r\n$8\r\nREPLCONF\r\n$3\r\nack\r\n$3\r\n100\r\n",
		"*2\r\n$4\r\nPING\r\n$100\r\nabc",
		"*99999999\r\n",
		"*1\r\n$4294967296\r\n",
		"*1\r\n$1\r\nab\r\n",
	} {
		f.Add([]byte(seed), uint(len(seed)/2))
	}
	f.Fuzz(func(t *testing.T, data []byte, cut uint) {
		whole := readAll(t, bufio.NewReader(bytes.NewReader(data)))
		at := int(cut % uint(len(data)+1))
		split := readAll(t, bufio.NewReader(io.MultiReader(bytes.NewReader(data[:at]), bytes.NewReader(data[at:]))))
		if !reflect.DeepEqual(whole, split) {
			t.Fatalf("cut at %d: read %q, whole %q", at, split, whole)
		}
	})
}

// readAll reads requests until an error and returns them, the error's
// kind last.
func readAll(t *testing.T, br *bufio.Reader) []string {
	var out []string
	for range 1000 {
		args, err := ReadCommand(br)
		if err != nil {
			var pe ProtocolError
			switch {
			case errors.As(err, &pe):
				return append(out, "protocol error: "+pe.what)
			case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
				return append(out, "end")
			}
			t.Fatalf("unexpected error %T: %v", err, err)
		}
		for _, a := range args {
			if len(a) > MaxBulk {
				t.Fatalf("argument of %d bytes passed the limit", len(a))
			}
			out = append(out, string(a))
		}
		out = append(out, "|")
	}
	return out
}
