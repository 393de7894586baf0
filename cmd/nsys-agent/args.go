package main

import (
	"io"
	"os"
	"strings"

	"github.com/mattn/go-isatty"
	"github.com/urfave/cli/v2"
)

// isTerminal reports whether w is a terminal (progress bars redraw only there). A
// character device is not enough: /dev/null is one, and a bar drawn into it is wasted.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	return isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd())
}

// interspersedArgs returns the positional arguments and applies flags written after
// them ("merge DIR -o OUT"), which urfave/cli v2 leaves unparsed.
func interspersedArgs(c *cli.Context) ([]string, error) {
	var pos []string
	args := c.Args().Slice()
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			pos = append(pos, a)
			continue
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f := lookupFlag(c.Command.Flags, name)
		if f == nil {
			return nil, usagef("%s: flag provided but not defined: %s", c.Command.Name, a)
		}
		if _, isBool := f.(*cli.BoolFlag); isBool && !hasVal {
			val = "true"
		} else if !hasVal {
			if i+1 >= len(args) {
				return nil, usagef("%s: flag needs an argument: %s", c.Command.Name, a)
			}
			i++
			val = args[i]
		}
		// Aliases are separate flags in urfave/cli v2: set every name.
		for _, n := range f.Names() {
			if err := c.Set(n, val); err != nil {
				return nil, usagef("%s: %s: %v", c.Command.Name, a, err)
			}
		}
	}
	return pos, nil
}

func lookupFlag(flags []cli.Flag, name string) cli.Flag {
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				return f
			}
		}
	}
	return nil
}
