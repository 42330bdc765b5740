package downstream

import (
	"slices"
	"testing"
)

// TestLibrariesApply: the FUNCTION commands of a stream change the
// libraries as on the master, and those the relay cannot follow are errors.
func TestLibrariesApply(t *testing.T) {
	code := func(name string) string {
		return "#!lua name=" + name + "\nredis.register_function('f', function() return 1 end)"
	}
	cmd := func(args ...string) [][]byte {
		out := make([][]byte, len(args))
		for i, a := range args {
			out[i] = []byte(a)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		cmds [][][]byte
		want []string // names left, sorted; nil with an error
	}{
		{"load", [][][]byte{cmd("FUNCTION", "LOAD", code("a")), cmd("function", "load", "REPLACE", code("a")), cmd("FUNCTION", "LOAD", code("b"))}, []string{"a", "b"}},
		{"delete", [][][]byte{cmd("FUNCTION", "LOAD", code("a")), cmd("FUNCTION", "LOAD", code("b")), cmd("FUNCTION", "DELETE", "a")}, []string{"b"}},
		{"flush", [][][]byte{cmd("FUNCTION", "LOAD", code("a")), cmd("FUNCTION", "FLUSH", "ASYNC"), cmd("FUNCTION", "LOAD", code("c"))}, []string{"c"}},
		{"delete unknown", [][][]byte{cmd("FUNCTION", "DELETE", "nope")}, nil},
		{"restore garbage", [][][]byte{cmd("FUNCTION", "RESTORE", "not a dump payload")}, nil},
		{"unknown subcommand", [][][]byte{cmd("FUNCTION", "MIGRATE", "x")}, nil},
		{"no name", [][][]byte{cmd("FUNCTION", "LOAD", "#!lua\nreturn 1")}, nil},
		{"quoted name", [][][]byte{cmd("FUNCTION", "LOAD", "#!lua name=\"a\"\nreturn 1")}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			libs := libraries{}
			var err error
			for _, c := range tc.cmds {
				if err = libs.apply(c, 10); err != nil {
					break
				}
			}
			if tc.want == nil {
				if err == nil {
					t.Fatalf("no error; libraries %v", libs)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for n := range libs {
				names = append(names, n)
			}
			slices.Sort(names)
			if !slices.Equal(names, tc.want) {
				t.Fatalf("libraries %v, want %v", names, tc.want)
			}
		})
	}
}
