//go:build !race

package rdbparse

const raceEnabled = false
