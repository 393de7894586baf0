package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/mattn/go-shellwords"
	"github.com/urfave/cli/v2"
)

// TestEveryCommandHasHelp: each command's --help has a description with an example, and
// every example in the help texts uses flags the command has (and -o only as a format).
func TestEveryCommandHasHelp(t *testing.T) {
	app := newApp(nil, nil)
	byName := map[string]*cli.Command{}
	for _, cmd := range app.Commands {
		byName[cmd.Name] = cmd
	}
	checkExamples(t, "nsys-agent --help", app.Description, byName)
	for _, cmd := range app.Commands {
		if cmd.Hidden {
			continue
		}
		r := runCLI(t, cmd.Name, "--help").must(t, 0)
		if !strings.Contains(r.stdout, "DESCRIPTION:") || !strings.Contains(r.stdout, "nsys-agent "+cmd.Name) {
			t.Errorf("%s --help has no description with an example:\n%s", cmd.Name, r.stdout)
		}
		checkExamples(t, cmd.Name+" --help", cmd.Description, byName)
	}
}

func checkExamples(t *testing.T, where, text string, cmds map[string]*cli.Command) {
	t.Helper()
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, "   nsys-agent ") { // examples are indented; prose is not
			continue
		}
		line, _, _ = strings.Cut(line, "#")
		// One example may run two commands (start ... && pull ...); the output may go
		// to a file: the shell's parts are not checked.
		for _, part := range strings.Split(line, " && ") {
			part, _, _ = strings.Cut(part, " > ")
			checkExample(t, where, strings.TrimSpace(part), cmds)
		}
	}
}

func checkExample(t *testing.T, where, line string, cmds map[string]*cli.Command) {
	t.Helper()
	p := shellwords.NewParser()
	words, err := p.Parse(line)
	if err == nil && p.Position != -1 {
		err = fmt.Errorf("shell operator at %q: not one command", line[p.Position:])
	}
	if err != nil || len(words) < 2 || words[0] != "nsys-agent" {
		t.Errorf("%s: example %q: %v", where, line, err)
		return
	}
	cmd := cmds[words[1]]
	if cmd == nil {
		t.Errorf("%s: example %q: no command %q", where, line, words[1])
		return
	}
	for i := 2; i < len(words); i++ {
		w := words[i]
		if w == "--" {
			break
		}
		if len(w) < 2 || w[0] != '-' {
			continue
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(w, "-"), "=")
		f := lookupFlag(cmd.Flags, name)
		if f == nil {
			t.Errorf("%s: example %q: %s has no flag %s", where, line, cmd.Name, w)
			continue
		}
		if _, isBool := f.(*cli.BoolFlag); isBool || hasVal {
			continue
		}
		if i+1 < len(words) {
			i++
			val = words[i]
		}
		if (name == "o" || name == "output") && val != "table" && val != "json" {
			t.Errorf("%s: example %q: -o %s is not a format", where, line, val)
		}
	}
}
