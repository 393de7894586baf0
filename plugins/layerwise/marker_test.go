package layerwise

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseMarker(t *testing.T) {
	tests := []struct {
		name, text string
		module     string
		layer      int
		kind       string
		keys       []string
	}{
		{"attention of a layer",
			"{'Module': 'model.model.layers.3.self_attn', 'Inputs': [[7], [7, 4096]]}",
			"model.model.layers.3.self_attn", 3, "model.model.layers.*.self_attn", []string{"Inputs"}},
		{"linear with every key SGLang writes",
			"{'Module': 'model.model.layers.0.mlp.down_proj', 'TrainableParams': {'weight': [4096, 11008], 'bias': [4096]}, 'Inputs': [[7, 11008]], 'StaticParams': {'in_features': 11008, 'out_features': 4096}}",
			"model.model.layers.0.mlp.down_proj", 0, "model.model.layers.*.mlp.down_proj", []string{"TrainableParams", "Inputs", "StaticParams"}},
		{"root module, no layer", "{'Module': 'model'}", "model", -1, "model", nil},
		{"expert inside a layer: the first number is the layer",
			"{'Module': 'model.model.layers.12.mlp.experts.7', 'Inputs': []}",
			"model.model.layers.12.mlp.experts.7", 12, "model.model.layers.*.mlp.experts.*", []string{"Inputs"}},
		{"conv with tuples, bools, strings and floats",
			"{'Module': 'model.visual.patch_embed.proj', 'TrainableParams': {'weight': [1280, 3, 2, 14, 14]}, 'Inputs': [[1, 3, 2, 14, 14]], 'StaticParams': {'in_chan': 3, 'out_chan': 1280, 'filter_dim': (2, 14, 14), 'stride': (2, 14, 14), 'padding': (0, 0, 0), 'dilation': (1,), 'transposed': False, 'output_padding': (), 'groups': 1, 'padding_mode': 'zeros'}}",
			"model.visual.patch_embed.proj", -1, "model.visual.patch_embed.proj", []string{"TrainableParams", "Inputs", "StaticParams"}},
		{"batch norm: float repr forms and None",
			"{'Module': 'm.bn', 'StaticParams': {'num_features': 64, 'epsilon': 1e-05, 'momentum': None, 'x': -inf, 'y': nan, 'z': 0.1, 'w': -3}}",
			"m.bn", -1, "m.bn", []string{"StaticParams"}},
		{"the name SGLang gives an unregistered module", "{'Module': 'unknown', 'Inputs': [[1]]}", "unknown", -1, "unknown", []string{"Inputs"}},
		{"double-quoted and escaped name (repr of a name with a quote)",
			`{"Module": "model.it's\t\x41\u00e9\U0001F600", 'Inputs': [[1]]}`,
			"model.it's\tAé😀", -1, "model.it's\tAé😀", []string{"Inputs"}},
		{"spaces, a trailing comma and a set", "  { 'Module' : 'a.1.b' , 'S': {1, 2}, }  ", "a.1.b", 1, "a.*.b", []string{"S"}},
		{"unknown escape stays as written", `{'Module': 'a\qb'}`, `a\qb`, -1, `a\qb`, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ParseMarker(tc.text)
			if err != nil {
				t.Fatal(err)
			}
			if m.Module != tc.module || m.Layer != tc.layer || m.Kind != tc.kind || !slices.Equal(m.Keys, tc.keys) {
				t.Errorf("got %+v, want module %q layer %d kind %q keys %q", m, tc.module, tc.layer, tc.kind, tc.keys)
			}
		})
	}
}

func TestParseMarkerRefuses(t *testing.T) {
	tests := []struct {
		name, text string
		notMarker  bool   // ErrNotMarker rather than a *MarkerError
		why        string // in the MarkerError
	}{
		{"another server range", "rank0/step2039", true, ""},
		{"a dict without Module", "{'foo': 'Module'}", true, ""},
		{"empty", "", true, ""},
		{"unterminated dict", "{'Module': 'a'", false, "expected ',' or '}'"},
		{"unterminated string", "{'Module': 'a}", false, "unterminated string"},
		{"newline in a string", "{'Module': 'a\nb'}", false, "newline"},
		{"Module not a string", "{'Module': 5}", false, "not a string"},
		{"Module a list", "{'Module': ['a']}", false, "not a string"},
		{"empty Module", "{'Module': ''}", false, "empty"},
		{"non-string key", "{1: 2, 'Module': 'a'}", false, "key"},
		{"text after the dict", "{'Module': 'a'} x", false, "after the dict"},
		{"two dicts", "{'Module': 'a'}{}", false, "after the dict"},
		{"a call", "{'Module': 'a', 'x': tensor(1)}", false, "unexpected name"},
		{"bad number", "{'Module': 'a', 'x': -}", false, "malformed number"},
		{"bad hex escape", `{'Module': 'a\xZZ'}`, false, "bad \\x"},
		{"short unicode escape", `{'Module': 'a\u12`, false, "escape"},
		{"rune out of range", `{'Module': '\UFFFFFFFF'}`, false, "bad \\U"},
		{"invalid UTF-8 name", "{'Module': 'a\xff'}", false, "UTF-8"},
		{"name too long", "{'Module': '" + strings.Repeat("a", maxModuleLen+1) + "'}", false, "bytes"},
		{"text too long", "{'Module': 'a', 'x': [" + strings.Repeat("1,", maxTextLen) + "]}", false, "longer"},
		{"too deep", "{'Module': 'a', 'x': " + strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth) + "}", false, "deeper"},
		{"missing colon", "{'Module' 'a'}", false, "':'"},
		{"set where a dict value should be", "{'Module': 'a', 'x': {1: 2, 3}}", false, "':'"},
		{"unclosed list", "{'Module': 'a', 'x': [1, 2}", false, "expected ','"},
		{"stray character", "{'Module': 'a', 'x': #}", false, "unexpected"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseMarker(tc.text)
			if tc.notMarker {
				if !errors.Is(err, ErrNotMarker) {
					t.Fatalf("error %v, want ErrNotMarker", err)
				}
				return
			}
			var me *MarkerError
			if !errors.As(err, &me) || !strings.Contains(me.Error(), tc.why) {
				t.Fatalf("error %v, want a MarkerError saying %q", err, tc.why)
			}
			if me.Offset < 0 || me.Offset > len(tc.text) {
				t.Errorf("offset %d outside the text of %d bytes", me.Offset, len(tc.text))
			}
		})
	}
}

// worstMarkers are the worst texts within the parser's limits: the deepest nesting, the
// most list items, the longest run of escapes.
func worstMarkers() []string {
	return []string{
		"{'Module': 'a', 'x': " + strings.Repeat("[", maxDepth-1) + strings.Repeat("]", maxDepth-1) + "}",
		"{'Module': 'a', 'x': [" + strings.Repeat("'\\x41',", maxTextLen/8) + "]}",
		"{'Module': 'a', 'x': '" + strings.Repeat("\\\\", maxTextLen/2-20) + "'}",
	}
}

// TestParseMarkerBounded: the worst texts within the limits are read. How fast is
// BenchmarkParseMarkerWorst's to show (a timed assertion here failed under -race on a
// loaded 2-vCPU machine: 137 ms a parse against a 20 ms bound, with nothing wrong).
func TestParseMarkerBounded(t *testing.T) {
	for _, text := range worstMarkers() {
		if _, err := ParseMarker(text); err != nil {
			t.Fatalf("%.60q...: %v", text, err)
		}
	}
}

// BenchmarkParseMarkerWorst: the worst texts within the limits, one parse each per op
// (measured on the 2-vCPU VM: 17 ms for the three, without -race).
func BenchmarkParseMarkerWorst(b *testing.B) {
	texts := worstMarkers()
	for b.Loop() {
		for _, text := range texts {
			if _, err := ParseMarker(text); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// FuzzParseMarker: no text makes the parser panic, loop, or return a marker that breaks
// its own rules. Seed corpus: testdata/fuzz/FuzzParseMarker.
func FuzzParseMarker(f *testing.F) {
	for _, s := range []string{
		"{'Module': 'model.model.layers.3.self_attn', 'Inputs': [[7], [7, 4096]]}",
		"{'Module': 'm', 'StaticParams': {'filter_dim': (2, 14), 'momentum': None, 'eps': 1e-05, 'b': True}}",
		`{"Module": "it's", 'S': {1, 2}, }`,
		"{'Module': 'a\\x41\\u00e9'}",
		"{'Module': 'a'",
		"rank0/step1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		m, err := ParseMarker(text)
		if err != nil {
			var me *MarkerError
			if !errors.Is(err, ErrNotMarker) && !errors.As(err, &me) {
				t.Fatalf("error %v is neither ErrNotMarker nor a *MarkerError", err)
			}
			return
		}
		if m.Module == "" || len(m.Module) > maxModuleLen || !utf8.ValidString(m.Module) {
			t.Fatalf("marker %+v breaks the module rules", m)
		}
		if !looksLikeMarker(text) || len(text) > maxTextLen {
			t.Fatalf("accepted %q, which is no layer range text", text)
		}
		if m.Layer < -1 || strings.Count(m.Kind, ".") != strings.Count(m.Module, ".") {
			t.Fatalf("marker %+v: layer or kind do not follow the module", m)
		}
	})
}
