package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"
)

// pluginDirFlag is --plugin-dir of run and backends. Its default is computed when used,
// not shown as a path: help must read the same wherever the binary lies.
func pluginDirFlag() cli.Flag {
	return &cli.StringFlag{Name: "plugin-dir", Usage: "where backend plugins (nsys-agent-backend-NAME) are found (default: the folder of this binary, where 'make build' puts them)"}
}

// pluginDir is --plugin-dir, or the folder of this binary (links resolved: a binary
// linked into /usr/local/bin finds the plugins beside the real file).
func pluginDir(c *cli.Context) (string, error) {
	if d := c.String("plugin-dir"); d != "" {
		return filepath.Abs(d)
	}
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("finding this binary's folder for plugins: %w (give --plugin-dir)", err)
	}
	if exe, err = filepath.EvalSymlinks(exe); err != nil {
		return "", fmt.Errorf("finding this binary's folder for plugins: %w (give --plugin-dir)", err)
	}
	return filepath.Dir(exe), nil
}
