//go:build !unix

package redistest

import "os/exec"

// ownProcessGroup does nothing where process groups are not available.
func ownProcessGroup(*exec.Cmd) {}

// killProcess kills the process itself.
func killProcess(cmd *exec.Cmd) {
	_ = cmd.Process.Kill()
}
