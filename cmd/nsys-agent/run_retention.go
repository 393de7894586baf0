package main

// Retention flags of `run` (issue 15, item 3).

import (
	"fmt"
	"math"

	"github.com/dustin/go-humanize"
	"github.com/urfave/cli/v2"

	"github.com/nsys-agent/nsys-agent/agent"
)

// retentionConfig reads --max-bytes, --keep-windows and --max-window-bytes.
func retentionConfig(c *cli.Context, cfg *agent.Config) error {
	var err error
	if cfg.MaxBytes, err = parseSize(c.String("max-bytes")); err != nil {
		return usagef("--max-bytes: %v (examples: 20GiB, 500MB, 0)", err)
	}
	if cfg.MaxWindowBytes, err = parseSize(c.String("max-window-bytes")); err != nil {
		return usagef("--max-window-bytes: %v (examples: 2GiB, 500MB, 0)", err)
	}
	if cfg.KeepWindows = c.Int("keep-windows"); cfg.KeepWindows < 0 {
		return usagef("--keep-windows: 0 (keep all) or more, got %d", cfg.KeepWindows)
	}
	return nil
}

// parseSize reads a byte size such as 500MiB, 2GB or 0.
func parseSize(s string) (int64, error) {
	n, err := humanize.ParseBytes(s)
	if err != nil {
		return 0, err
	}
	if n > math.MaxInt64 {
		return 0, fmt.Errorf("%s is too large", s)
	}
	return int64(n), nil
}
