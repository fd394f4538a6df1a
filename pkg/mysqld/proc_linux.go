package mysqld

import "syscall"

// sysProcAttr puts the server in its own process group, so a Ctrl-C aimed at
// the parent's group does not reach it, and optionally ties its life to the
// parent's.
func sysProcAttr(dieWithParent bool) *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setpgid: true}
	if dieWithParent {
		a.Pdeathsig = syscall.SIGKILL
	}
	return a
}
