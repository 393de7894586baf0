package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/dustin/go-humanize"
	"github.com/urfave/cli/v2"

	"github.com/nsys-agent/nsys-agent/nsys/doctor"
)

func doctorCommand() *cli.Command {
	return clientCommand(&cli.Command{
		Name:      "doctor",
		Usage:     "pre-flight: what would stop a capture on this host, and the fix",
		ArgsUsage: " ",
		Description: `Checks this host as 'nsys-agent run' would use it: nsys (found, runs, its version and
arming modes), 'nsys sessions list', QdstrmImporter and its shared libraries, free space
and write access of the data dir and TMPDIR, CPU-sampling permission
(perf_event_paranoid), the listen port, the GPU driver, CUDA device nodes and CUPTI (or
"no GPU"), and a running agent with its target's state.

Each check is ok, warn or FAIL with a one-line finding and the fix. The exit code is 1
when a capture would fail (any FAIL), 0 otherwise. Give it the flags you give 'run'.

   nsys-agent doctor
   nsys-agent doctor --nsys /opt/nvidia/nsight-systems/2025.3.1/bin/nsys --data-dir /var/lib/nsys-agent
   nsys-agent doctor --agent gpu1:7477 -o json`,
		Flags: clientFlags(
			nsysFlag(),
			&cli.StringFlag{Name: "data-dir", Value: doctor.DefaultDataDir, Usage: "the agent's --data-dir"},
			&cli.StringFlag{Name: "listen", Value: doctor.DefaultListen, Usage: "the agent's --listen address"},
			&cli.StringFlag{Name: "min-free", Value: "100MiB", Usage: "the agent's --min-free"},
		),
		Action: runDoctor,
	})
}

// doctorReport is `doctor -o json`.
type doctorReport struct {
	OK     bool            `json:"ok"`
	Checks []doctor.Result `json:"checks"`
}

// doctorFailedError: a capture would fail; the exit code is 1.
type doctorFailedError struct{ Failed []string }

func (e *doctorFailedError) Error() string {
	return "a capture would fail on this host (failed: " + strings.Join(e.Failed, ", ") + "); each FAIL above says the fix"
}

func runDoctor(c *cli.Context) error {
	if _, err := positional(c, 0, 0, "no arguments"); err != nil {
		return err
	}
	minFree, err := humanize.ParseBytes(c.String("min-free"))
	if err != nil {
		return usagef("--min-free: %v (examples: 500MiB, 2GB, 0)", err)
	}
	s, err := setupClients(c, "output")
	if err != nil {
		return err
	}
	defer s.close()
	cfg := doctor.Config{Nsys: c.String("nsys"), DataDir: c.String("data-dir"), Listen: c.String("listen"), MinFree: minFree}
	results := doctor.Run(c.Context, cfg)
	agents := checkAgents(c.Context, s, c.IsSet("agent"))
	results = append(explainPort(results, cfg.Listen, agents), agentResults(agents)...)

	failed := doctor.Failed(results)
	if s.json() {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		if err := enc.Encode(doctorReport{OK: len(failed) == 0, Checks: results}); err != nil {
			return err
		}
	} else {
		printDoctor(c.App.Writer, results)
	}
	if len(failed) > 0 {
		return &doctorFailedError{Failed: failed}
	}
	return nil
}

func printDoctor(w io.Writer, results []doctor.Result) {
	tw := newTable(w)
	fmt.Fprintln(tw, "STATUS\tCHECK\tFINDING")
	warnings := 0
	for _, r := range results {
		st := string(r.Status)
		switch r.Status {
		case doctor.Fail:
			st = "FAIL"
		case doctor.Warn:
			warnings++
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", st, r.Check, r.Finding)
		if r.Fix != "" {
			fmt.Fprintf(tw, "\t\tfix: %s\n", r.Fix)
		}
	}
	_ = tw.Flush()
	if len(doctor.Failed(results)) == 0 {
		fmt.Fprintf(w, "nothing here stops a capture (%d warning(s))\n", warnings)
	}
}
