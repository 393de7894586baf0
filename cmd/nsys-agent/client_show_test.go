package main

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/nsys-agent/nsys-agent/agent/cost"
	"github.com/nsys-agent/nsys-agent/agent/windows"
)

func TestCostLines(t *testing.T) {
	half, slow := 0.5, 0.6
	r := cost.Result{Source: "metric sglang:gen_throughput", Before: &cost.Reading{Value: 100, Samples: 60},
		During: &cost.Reading{Value: 50, Samples: 10}, After: &cost.Reading{Value: 60, Samples: 60},
		DuringRatio: &half, AfterRatio: &slow, AfterFor: "1m0s", Slowdown: "the server's throughput was still 40% below"}
	raw, _ := json.Marshal(r)
	line, finding := costLines(raw)
	if line != "during 0.50x, after 0.60x of 100 before (metric sglang:gen_throughput; after = 1m0s once ready)" || !strings.HasPrefix(finding, "the server's throughput was still 40%") {
		t.Errorf("line %q finding %q", line, finding)
	}
	raw, _ = json.Marshal(cost.Result{Source: "log /x/", Note: "no throughput reading in the 1m0s before the window"})
	if line, finding = costLines(raw); line != "no throughput reading in the 1m0s before the window" || finding != "" {
		t.Errorf("without a before reading: %q %q", line, finding)
	}
	if line, finding = costLines(nil); line != "" || finding != "" {
		t.Errorf("no cost: %q %q", line, finding)
	}
}

// TestShowLayerTable: a layerwise-nvtx window's summary is printed as its layer table.
func TestShowLayerTable(t *testing.T) {
	summary, err := os.ReadFile("../../plugins/layerwise/testdata/h100-layers.summary.golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	printManifest(&out, &windows.Manifest{ID: "w1", State: windows.StateReady, Backend: "layerwise-nvtx", Summary: summary})
	if !strings.Contains(out.String(), "layer ranges; modules by self time") || !strings.Contains(out.String(), "pid 627") {
		t.Errorf("show of a layerwise window:\n%s", out.String())
	}
	out.Reset()
	printManifest(&out, &windows.Manifest{ID: "w2", State: windows.StateReady, Backend: "nsys", Summary: json.RawMessage(`{"slowest_rank":"pid 1"}`)})
	if strings.Contains(out.String(), "layer ranges") {
		t.Errorf("a non-layerwise summary printed as a layer table:\n%s", out.String())
	}
}
