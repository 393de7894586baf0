package shared

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
)

// parentPoll is how often a plugin checks that the agent that started it is alive: one
// getppid(2) call, so the cost is nil, and a plugin outlives a killed agent by at most
// this long.
const parentPoll = 500 * time.Millisecond

// Serve serves b as a backend plugin over go-plugin gRPC and returns when the agent ends
// it. A plugin's main is one line: func main() { shared.Serve(torch.New()) }.
//
// Logs go to stderr through hclog, as JSON the agent's go-plugin client re-logs with
// their levels (stdout is go-plugin's handshake channel: never print there). The plugin
// exits when the agent dies, even by SIGKILL: the agent's Pdeathsig fires on the death of
// the OS thread that forked the plugin, not of the agent (golang/go#27505), so Serve also
// watches its parent pid and exits when the plugin has been orphaned.
func Serve(b Backend) {
	logger := hclog.New(&hclog.LoggerOptions{
		Name:       "backend-plugin",
		Output:     os.Stderr,
		Level:      hclog.Debug, // the agent's logger filters; it decides what is shown
		JSONFormat: true,
	})
	hclog.SetDefault(logger)
	if os.Getenv(Handshake.MagicCookieKey) != Handshake.MagicCookieValue {
		fmt.Fprintf(os.Stderr, "%s is an nsys-agent backend plugin, not a command: nsys-agent starts it "+
			"itself (put it in the agent's plugin folder and open a window with `nsys-agent start --backend NAME`)\n",
			filepath.Base(os.Args[0]))
		os.Exit(1)
	}
	if ppid := os.Getppid(); ppid > 1 {
		go func() {
			waitOrphaned(ppid, parentPoll, os.Getppid, nil)
			logger.Warn("the agent that started this plugin is gone; exiting", "agent_pid", ppid)
			os.Exit(1)
		}()
	} else {
		logger.Debug("started by init, not by an agent: not watching the parent", "ppid", ppid)
	}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         PluginMap(b),
		GRPCServer:      plugin.DefaultGRPCServer,
		Logger:          logger,
	})
}

// waitOrphaned returns true once getppid no longer answers ppid (the parent died and the
// process was re-parented to init or a subreaper), or false when stop is closed first.
func waitOrphaned(ppid int, every time.Duration, getppid func() int, stop <-chan struct{}) bool {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return false
		case <-t.C:
			if getppid() != ppid {
				return true
			}
		}
	}
}
