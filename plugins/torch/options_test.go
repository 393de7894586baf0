package torch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/nsys-agent/nsys-agent/plugins/shared"
	"github.com/nsys-agent/nsys-agent/torchprof/serverprof"
)

func TestParseOptions(t *testing.T) {
	yes, no := true, false
	for _, tc := range []struct {
		name    string
		in      map[string]string
		want    windowOptions
		wantErr string // the option the error names
	}{
		{name: "none", in: nil, want: windowOptions{}},
		{name: "mem", in: map[string]string{"mem": "true"}, want: windowOptions{mem: true}},
		{name: "mem off", in: map[string]string{"mem": "0"}, want: windowOptions{}},
		{name: "stack and shapes", in: map[string]string{"with_stack": "false", "record_shapes": " T "}, want: windowOptions{withStack: &no, recordShapes: &yes}},
		{name: "unknown", in: map[string]string{"mem": "true", "profile_by_stage": "true"}, wantErr: "profile_by_stage"},
		{name: "not a bool", in: map[string]string{"with_stack": "yes"}, wantErr: "with_stack"},
		{name: "first bad in sorted order", in: map[string]string{"zz": "1", "aa": "1"}, wantErr: `option aa="1"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseOptions(tc.in)
			if tc.wantErr != "" {
				var oe *OptionError
				if !errors.As(err, &oe) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parseOptions = %v, want an *OptionError naming %q", err, tc.wantErr)
				}
				if !errors.Is(mapServerError(err), shared.ErrUnsupported) {
					t.Errorf("a bad option maps to %v, want ErrUnsupported", mapServerError(err))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.mem != tc.want.mem || !sameBool(got.withStack, tc.want.withStack) || !sameBool(got.recordShapes, tc.want.recordShapes) {
				t.Errorf("parseOptions = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func sameBool(a, b *bool) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }

func TestActivities(t *testing.T) {
	if got := (windowOptions{}).activities(); !slices.Equal(got, []serverprof.Activity{serverprof.CPU, serverprof.GPU}) {
		t.Errorf("default activities = %v", got)
	}
	if got := (windowOptions{mem: true}).activities(); !slices.Equal(got, []serverprof.Activity{serverprof.CPU, serverprof.GPU, serverprof.MEM}) {
		t.Errorf("mem activities = %v", got)
	}
}

// TestInfoOptions: every option Info declares is one parseOptions takes.
func TestInfoOptions(t *testing.T) {
	info, err := New("v").Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Options) != 3 {
		t.Errorf("options = %v", info.Options)
	}
	for _, o := range info.Options {
		if _, err := parseOptions(map[string]string{o.Name: "true"}); err != nil || o.Usage == "" {
			t.Errorf("declared option %s: %v (usage %q)", o.Name, err, o.Usage)
		}
	}
}

// FuzzParseOptions: options come from users over the network; whatever they are,
// parsing never panics, and accepts only declared names with boolean values.
func FuzzParseOptions(f *testing.F) {
	f.Add("mem", "true")
	f.Add("with_stack", "0")
	f.Add("record_shapes", "FALSE")
	f.Add("../x", "1")
	f.Add("mem", "yes")
	f.Fuzz(func(t *testing.T, name, value string) {
		o, err := parseOptions(map[string]string{name: value})
		known := slices.ContainsFunc(options, func(opt shared.Option) bool { return opt.Name == name })
		if err == nil && !known {
			t.Fatalf("accepted unknown option %q", name)
		}
		if err != nil {
			var oe *OptionError
			if !errors.As(err, &oe) || oe.Name != name {
				t.Fatalf("error %v does not name option %q", err, name)
			}
			return
		}
		if name == OptMem && fmt.Sprint(o.mem) != canonicalBool(t, value) {
			t.Fatalf("mem=%q read as %v", value, o.mem)
		}
	})
}

func canonicalBool(t *testing.T, v string) string {
	switch strings.TrimSpace(v) {
	case "1", "t", "T", "TRUE", "true", "True":
		return "true"
	case "0", "f", "F", "FALSE", "false", "False":
		return "false"
	}
	t.Fatalf("%q accepted as a boolean", v)
	return ""
}
