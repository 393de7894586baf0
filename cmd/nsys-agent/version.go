package main

import (
	"fmt"
	"runtime"

	"github.com/urfave/cli/v2"
)

// versionInfo is what `nsys-agent version -o json` prints.
type versionInfo struct {
	Version string `json:"version"`
	Go      string `json:"go"`
	OS      string `json:"os"`
	Arch    string `json:"arch"`
}

func versionCommand() *cli.Command {
	return clientCommand(&cli.Command{
		Name:      "version",
		Usage:     "print this binary's version",
		ArgsUsage: " ",
		Description: `Prints the version of this nsys-agent binary, and the Go release and platform it was
built with. A running agent reports its own in 'nsys-agent status'.

   nsys-agent version
   nsys-agent version -o json`,
		Flags: []cli.Flag{outputFlag("output", "o")},
		Action: func(c *cli.Context) error {
			if _, err := positional(c, 0, 0, "no arguments"); err != nil {
				return err
			}
			v := versionInfo{Version: version, Go: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
			switch c.String("output") {
			case "json":
				writeJSON(c.App.Writer, v)
			case "table":
				fmt.Fprintf(c.App.Writer, "nsys-agent %s (%s, %s/%s)\n", v.Version, v.Go, v.OS, v.Arch)
			default:
				return usagef("version: -o %q: want table or json", c.String("output"))
			}
			return nil
		},
	})
}
