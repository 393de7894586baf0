//go:build !linux

package demotarget

import (
	"os"
	"syscall"
)

// Without Pdeathsig a worker notices a dead server only when its stdin closes.
func workerSysProcAttr() *syscall.SysProcAttr { return nil }

func gettid() int { return os.Getpid() }
