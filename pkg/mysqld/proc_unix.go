//go:build unix && !linux

package mysqld

import "syscall"

// sysProcAttr puts the server in its own process group, so a Ctrl-C aimed at
// the parent's group does not reach it. dieWithParent needs Linux.
func sysProcAttr(_ bool) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
