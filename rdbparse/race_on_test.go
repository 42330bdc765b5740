//go:build race

package rdbparse

// raceEnabled thins out the exhaustive byte-by-byte tests, which the race
// detector slows down tenfold.
const raceEnabled = true
