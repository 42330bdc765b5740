//go:build !unix

package redisproc

import (
	"os"
	"os/exec"
)

// ownProcessGroup does nothing where process groups are not available.
func ownProcessGroup(*exec.Cmd) {}

// killProcess kills the process itself.
func killProcess(cmd *exec.Cmd) {
	_ = cmd.Process.Kill()
}

// terminate asks a process to end: here it can only be killed.
var terminate = os.Kill
