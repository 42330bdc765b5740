//go:build unix

package redisproc

import (
	"os"
	"os/exec"
	"syscall"
)

// ownProcessGroup makes the command lead a process group of its own, so that
// killProcess also reaches children redis-server forks (BGSAVE, diskless
// replication).
func ownProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// killProcess sends SIGKILL to the command's whole process group, falling
// back to the process alone.
func killProcess(cmd *exec.Cmd) {
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err != nil {
		_ = cmd.Process.Kill()
	}
}

// terminate asks a process to end.
var terminate os.Signal = syscall.SIGTERM
