package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestDemo runs what `make demo` runs, small: a master, a relay and two
// replicas under a write load must end with every replica matching the
// master.
func TestDemo(t *testing.T) {
	var out bytes.Buffer
	if err := runDemo(t.Context(), &out, 2, 2000, 2*time.Second); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "replica2") {
		t.Fatalf("demo output names no replica2:\n%s", out.String())
	}
}
