package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/nsys-agent/nsys-agent/cmd/nsys-agent/internal/demotarget"
)

// demoServerCommand runs the built-in SGLang-compatible demo target; demo-worker is its
// hidden rank process, started by re-executing this binary.
func demoServerCommand() *cli.Command {
	return &cli.Command{
		Name:  "demo-server",
		Usage: "run the built-in SGLang-compatible demo target (CPU only, simulated GPU traces)",
		Description: `demo-server speaks SGLang's HTTP API (/health, /get_server_info, /v1/completions,
/start_profile, /stop_profile) and runs --ranks worker processes that do steady CPU work
in lockstep. Profiling windows write Kineto traces per rank, as SGLang does.
'nsys-agent run' with no server command runs it for you.

   nsys-agent demo-server --port 30000 --ranks 2`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "host", Value: "127.0.0.1", Usage: "address to listen on"},
			&cli.IntFlag{Name: "port", Value: 30000, Usage: "port to listen on; 0 picks a free one"},
			&cli.IntFlag{Name: "ranks", Value: demotarget.DefaultRanks, Usage: "rank worker processes (tp_size)"},
			&cli.StringFlag{Name: "ready-file", Usage: "write the server's URL to `FILE` once it answers"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("demo-server takes no arguments, got %q", c.Args().Slice())
			}
			ranks, port := c.Int("ranks"), c.Int("port")
			if ranks < 1 || ranks > demotarget.MaxRanks {
				return usagef("--ranks must be between 1 and %d, got %d", demotarget.MaxRanks, ranks)
			}
			if port < 0 || port > 65535 {
				return usagef("--port must be between 0 and 65535, got %d", port)
			}
			ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			return demotarget.Run(ctx, demotarget.Options{
				Host: c.String("host"), Port: port, Ranks: ranks, ReadyFile: c.String("ready-file"),
				Stdout: c.App.Writer, Stderr: c.App.ErrWriter,
			})
		},
	}
}

func demoWorkerCommand() *cli.Command {
	return &cli.Command{
		Name:   "demo-worker",
		Usage:  "one rank of demo-server (started by it, speaks JSON lines on stdin/stdout)",
		Hidden: true,
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "rank", Required: true},
		},
		Action: func(c *cli.Context) error {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return demotarget.RunWorker(ctx, c.Int("rank"), demotarget.WorkerOptions{})
		},
	}
}
