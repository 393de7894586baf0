// Command nsys-agent launches an inference server under NVIDIA Nsight Systems once and
// lets allowed users open and close capture windows on it, locally or remotely.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/urfave/cli/v2"
)

// Exit codes (DESIGN.md): 0 ok, 1 failed, 2 bad usage.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

func main() {
	hideToken(os.Stderr)
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

// run executes the app and maps errors to exit codes. cli.Exit is never used: it calls
// os.Exit inside Run and would skip deferred cleanup.
func run(args []string, stdout, stderr io.Writer) int {
	app := newApp(stdout, stderr)
	err := app.Run(args)
	if err == nil {
		if app.Metadata["unknownCommand"] != nil {
			return exitUsage
		}
		return exitOK
	}
	fmt.Fprintf(stderr, "nsys-agent: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	return exitFailed
}

// usageError marks a mistake in how the command was called (exit code 2).
type usageError struct{ error }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

func newApp(stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:  "nsys-agent",
		Usage: "open and close Nsight Systems capture windows on a live inference server",
		Description: `nsys-agent launches your server (SGLang, vLLM, any CUDA program) once under nsys
and then lets you capture as many windows as you like without restarting it.

   nsys-agent run -- python -m sglang.launch_server --model-path M   # the agent (GPU host)
   nsys-agent start --duration 5s --name warmup                      # open a window
   nsys-agent stop                                                   # or close it yourself
   nsys-agent pull warmup --dir ./reports                            # fetch its reports

WINDOW, wherever a command takes one, is a window's id, its name (the newest window of
that name), latest (the newest window) or active (the one capturing).
Run 'nsys-agent COMMAND --help' for the flags of a command and examples.`,
		Writer:               stdout,
		ErrWriter:            stderr,
		Version:              version,
		EnableBashCompletion: true,
		OnUsageError: func(c *cli.Context, err error, isSubcommand bool) error {
			return usageError{err}
		},
		Commands: commands(),
	}
	// Unknown commands are usage errors, not silent help.
	app.Metadata = map[string]any{}
	app.CommandNotFound = func(c *cli.Context, name string) {
		app.Metadata["unknownCommand"] = name
		fmt.Fprintf(stderr, "nsys-agent: unknown command %q; run 'nsys-agent --help'\n", name)
	}
	return app
}

// commands is the one registry of subcommands; each lives in its own file.
func commands() []*cli.Command {
	return []*cli.Command{
		runCommand(),
		sessionsCommand(),
		backendsCommand(),
		startCommand(),
		stopCommand(),
		statusCommand(),
		windowsCommand(),
		showCommand(),
		waitCommand(),
		pullCommand(),
		triggersCommand(), // issue 15, triggers part
		demoServerCommand(),
		demoWorkerCommand(),
		mergeCommand(),
		analyzeCommand(),
		versionCommand(),
		completionCommand(),
		// Retention (issue 15, item 3).
		rmCommand(),
		pinCommand(true),
		pinCommand(false),
		// issue 15, doctor: pre-flight checks of this host.
		doctorCommand(),
	}
}
