// Command nsys-agent-backend-layerwise-nvtx is the layerwise-NVTX backend plugin: it
// adds SGLang's layer markers at launch and turns each cuda-profiler window's report into
// a per-layer GPU time table (plugins/layerwise). The agent starts it over go-plugin gRPC.
package main

import (
	"github.com/nsys-agent/nsys-agent/plugins/layerwise"
	"github.com/nsys-agent/nsys-agent/plugins/shared"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "0.1.0-dev"

func main() { shared.Serve(layerwise.New(version)) }
