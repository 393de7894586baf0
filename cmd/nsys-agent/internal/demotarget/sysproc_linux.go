package demotarget

import "syscall"

// workerSysProcAttr makes the kernel send SIGTERM to a worker when the server dies, even by
// SIGKILL, so no rank outlives its server. The worker also exits when its stdin closes.
func workerSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}

func gettid() int { return syscall.Gettid() }
