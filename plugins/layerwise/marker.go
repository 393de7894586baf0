package layerwise

// SGLang's layer ranges. With --enable-layerwise-nvtx-marker, SGLang's model runner
// registers PyTorch forward hooks on every module of the model
// (python/sglang/srt/utils/nvtx_pytorch_hooks.py, `PytHooks.register_hooks(model,
// module_prefix="model")`): the pre-hook pushes one NVTX range whose text is the repr of a
// Python dict, the post-hook pops it. The dict always has 'Module' (the module's dotted
// name from named_modules, e.g. 'model.model.layers.3.self_attn'), and, when they apply,
// 'TrainableParams' (parameter shapes), 'Inputs' (input tensor shapes) and 'StaticParams'
// (in_features, ... of Linear, Conv, pooling layers):
//
//	{'Module': 'model.model.layers.0.mlp.down_proj', 'TrainableParams': {'weight': [4096, 11008]}, 'Inputs': [[7, 11008]]}

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits on what a range text may cost. SGLang's texts are a few hundred bytes (a module
// name and a handful of shapes); anything far beyond is not one of them.
const (
	maxTextLen   = 64 << 10 // bytes of range text parsed at all
	maxDepth     = 64       // nesting of lists, tuples and dicts
	maxModuleLen = 1024     // bytes of a module name
)

// Marker is what a layer range says about the module that pushed it.
type Marker struct {
	// Module is the module's dotted name, as SGLang registered it ("model.model.layers.3.self_attn").
	Module string
	// Layer is the number of the layer the module belongs to: the first all-digit part of
	// its name (3 for "model.model.layers.3.self_attn"); -1 when there is none ("model.lm_head").
	Layer int
	// Kind is the module's name with every all-digit part replaced by "*"
	// ("model.model.layers.*.self_attn"): the same submodule across layers.
	Kind string
	// Keys are the dict's other keys, in order (Inputs, TrainableParams, StaticParams).
	Keys []string
}

// ErrNotMarker: the text is not a layer range (another NVTX range of the server).
var ErrNotMarker = errors.New("not an SGLang layer range")

// MarkerError says why a text that looks like a layer range could not be read.
type MarkerError struct {
	Offset int // byte offset in the text
	Why    string
}

func (e *MarkerError) Error() string {
	return fmt.Sprintf("malformed SGLang layer range text at byte %d: %s", e.Offset, e.Why)
}

// looksLikeMarker is a cheap test for texts worth parsing: a dict repr naming a module.
func looksLikeMarker(text string) bool {
	t := strings.TrimLeft(text, " \t\r\n")
	return strings.HasPrefix(t, "{") && (strings.Contains(t, "'Module'") || strings.Contains(t, `"Module"`))
}

// ParseMarker reads one range text. Texts that are no dict naming a module give
// ErrNotMarker; dicts that break Python's repr syntax, nest deeper than 64 or exceed
// 64 KiB give a *MarkerError. Its work is linear in the text and bounded by the limits.
func ParseMarker(text string) (Marker, error) {
	if !looksLikeMarker(text) {
		return Marker{}, ErrNotMarker
	}
	if len(text) > maxTextLen {
		return Marker{}, &MarkerError{Offset: maxTextLen, Why: fmt.Sprintf("text of %d bytes is longer than the %d a layer range can be", len(text), maxTextLen)}
	}
	p := &reprParser{s: text}
	m := Marker{Layer: -1}
	module, found := "", false
	err := p.dict(func(key string) error {
		if key != "Module" {
			if len(m.Keys) < 16 {
				m.Keys = append(m.Keys, key)
			}
			return p.value()
		}
		at := p.i
		s, isStr, err := p.valueString()
		if err != nil {
			return err
		}
		if !isStr {
			return &MarkerError{Offset: at, Why: "'Module' is not a string"}
		}
		module, found = s, true
		return nil
	})
	if err != nil {
		return Marker{}, err
	}
	p.space()
	if p.i != len(p.s) {
		return Marker{}, p.fail("text after the dict")
	}
	switch {
	case !found:
		return Marker{}, ErrNotMarker
	case module == "":
		return Marker{}, &MarkerError{Offset: 0, Why: "empty 'Module'"}
	case len(module) > maxModuleLen:
		return Marker{}, &MarkerError{Offset: 0, Why: fmt.Sprintf("'Module' of %d bytes (at most %d)", len(module), maxModuleLen)}
	case !utf8.ValidString(module):
		return Marker{}, &MarkerError{Offset: 0, Why: "'Module' is not valid UTF-8"}
	}
	m.Module = module
	m.Layer, m.Kind = layerOf(module)
	return m, nil
}

// layerOf finds the layer number of a module name and its kind (numbers as "*").
func layerOf(module string) (int, string) {
	parts := strings.Split(module, ".")
	layer := -1
	for i, part := range parts {
		if part == "" || strings.Trim(part, "0123456789") != "" {
			continue
		}
		if layer < 0 {
			if n, err := strconv.Atoi(part); err == nil {
				layer = n
			}
		}
		parts[i] = "*"
	}
	return layer, strings.Join(parts, ".")
}
