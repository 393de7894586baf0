package torch

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/nsys-agent/nsys-agent/plugins/shared"
	"github.com/nsys-agent/nsys-agent/torchprof/serverprof"
)

// The window options the backend accepts (`start --option NAME=VALUE`); values are
// booleans as Go's strconv.ParseBool reads them (true, false, 1, 0, t, f).
const (
	// OptMem adds SGLang's MEM activity: a CUDA memory snapshot (*.pickle) per rank.
	OptMem = "mem"
	// OptWithStack records Python stacks with every op (SGLang's default: true). Stacks
	// make the traces larger and the recording slower (vLLM measured ≈ 7 %).
	OptWithStack = "with_stack"
	// OptRecordShapes records the input shapes of every op (SGLang's default: false).
	OptRecordShapes = "record_shapes"
)

// options is what the backend's Info declares, in the order `nsys-agent backends` lists them.
var options = []shared.Option{
	{Name: OptMem, Usage: "true: also record a CUDA memory snapshot per rank (SGLang's MEM activity)"},
	{Name: OptWithStack, Usage: "true or false: record Python stacks with every op (SGLang only; its default is true)"},
	{Name: OptRecordShapes, Usage: "true or false: record the input shapes of every op (SGLang only; its default is false)"},
}

// OptionError is a window option the backend cannot take: an unknown name or a value
// that is not a boolean.
type OptionError struct {
	Name, Value string
	Reason      string
}

func (e *OptionError) Error() string {
	return fmt.Sprintf("option %s=%q: %s", e.Name, e.Value, e.Reason)
}

// windowOptions are a window's options, parsed. A nil pointer leaves the server's default.
type windowOptions struct {
	mem          bool
	withStack    *bool
	recordShapes *bool
}

// parseOptions reads a window's options; the first bad one is an *OptionError (names are
// checked in sorted order, so the same options always name the same one).
func parseOptions(m map[string]string) (windowOptions, error) {
	var o windowOptions
	names := make([]string, 0, len(m))
	for name := range m {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		value := m[name]
		known := slices.ContainsFunc(options, func(opt shared.Option) bool { return opt.Name == name })
		if !known {
			return o, &OptionError{Name: name, Value: value, Reason: "the torch backend takes only " + optionNames()}
		}
		b, err := strconv.ParseBool(strings.TrimSpace(value))
		if err != nil {
			return o, &OptionError{Name: name, Value: value, Reason: "want true or false"}
		}
		switch name {
		case OptMem:
			o.mem = b
		case OptWithStack:
			o.withStack = &b
		case OptRecordShapes:
			o.recordShapes = &b
		}
	}
	return o, nil
}

func optionNames() string {
	names := make([]string, len(options))
	for i, o := range options {
		names[i] = o.Name
	}
	return strings.Join(names, ", ")
}

// activities is what a window records: CPU ops and GPU kernels, and the memory snapshot
// when asked.
func (o windowOptions) activities() []serverprof.Activity {
	a := []serverprof.Activity{serverprof.CPU, serverprof.GPU}
	if o.mem {
		a = append(a, serverprof.MEM)
	}
	return a
}
