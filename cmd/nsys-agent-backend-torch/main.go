// Command nsys-agent-backend-torch is the torch-profiler backend plugin: the agent starts
// it from its plugin folder and talks to it over go-plugin gRPC (plugins/torch).
package main

import (
	"github.com/nsys-agent/nsys-agent/plugins/shared"
	"github.com/nsys-agent/nsys-agent/plugins/torch"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "0.1.0-dev"

func main() { shared.Serve(torch.New(version)) }
