package main

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// tokenFDEnv names the pipe a re-executed nsys-agent reads its token from.
const tokenFDEnv = "NSYS_AGENT_TOKEN_FD"

// tokenFromArgv finds a `--token` value among nsys-agent's own flags (before `--`) and
// returns the arguments without it.
func tokenFromArgv(args []string) (clean []string, token string, found bool) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			clean = append(clean, args[i:]...)
			break
		}
		switch {
		case (a == "--token" || a == "-token") && i+1 < len(args):
			token, found = args[i+1], true
			i++
			continue
		case strings.HasPrefix(a, "--token=") || strings.HasPrefix(a, "-token="):
			_, token, _ = strings.Cut(a, "=")
			found = true
			continue
		}
		clean = append(clean, a)
	}
	return clean, token, found
}

// hideToken keeps the API token out of this process's arguments and environment as the
// kernel shows them (/proc/PID/cmdline and environ). Measured with nsys 2022.4: a report
// records the command line and the environment of host processes that run during the
// capture, the agent's and a client's alike, so a token there is in every report. With a
// token in argv (--token) or in NSYS_AGENT_TOKEN, nsys-agent re-executes itself with
// neither, handing the token over through a pipe; os.Setenv then makes it visible to the
// flags only inside this process (it does not change what /proc shows, and no child gets
// it: every child's environment is built without it).
func hideToken(stderr io.Writer) {
	if fdText := os.Getenv(tokenFDEnv); fdText != "" {
		os.Unsetenv(tokenFDEnv)
		if tok, err := readTokenFD(fdText); err == nil {
			os.Setenv("NSYS_AGENT_TOKEN", tok)
		} else {
			fmt.Fprintf(stderr, "nsys-agent: reading the token handed over at re-execution: %v\n", err)
		}
		return
	}
	clean, token, inArgv := tokenFromArgv(os.Args)
	if !inArgv {
		token = os.Getenv("NSYS_AGENT_TOKEN")
	}
	if token == "" {
		return
	}
	if inArgv {
		fmt.Fprintln(stderr, "nsys-agent: --token on the command line is visible to every user of this host, and nsys records command lines in its reports; nsys-agent hides it now, but prefer --token-file or NSYS_AGENT_TOKEN")
	}
	r, w, err := os.Pipe()
	if err == nil {
		_, err = io.WriteString(w, token)
		w.Close()
	}
	if err == nil {
		// Keep the read end open across exec (os.Pipe sets close-on-exec).
		_, _, errno := syscall.Syscall(syscall.SYS_FCNTL, r.Fd(), syscall.F_SETFD, 0)
		if errno != 0 {
			err = errno
		}
	}
	if err == nil {
		env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "NSYS_AGENT_TOKEN=") })
		env = append(env, fmt.Sprintf("%s=%d", tokenFDEnv, r.Fd()))
		// /proc/self/exe is this very binary, even if it was replaced on disk since.
		err = syscall.Exec("/proc/self/exe", clean, env)
	}
	fmt.Fprintf(stderr, "nsys-agent: could not re-execute to hide the token (%v); it stays visible in this process's arguments or environment\n", err)
}

func readTokenFD(fdText string) (string, error) {
	fd, err := strconv.Atoi(fdText)
	if err != nil || fd < 3 {
		return "", fmt.Errorf("%s=%q is not a file descriptor", tokenFDEnv, fdText)
	}
	f := os.NewFile(uintptr(fd), "token")
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, 64<<10))
	return string(raw), err
}
