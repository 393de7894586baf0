// Command plugin serves the scripted backend as a real plugin process, for the contract
// tests of plugins/shared (they build it into a temporary folder). It is also what every
// backend plugin's main looks like.
package main

import (
	"github.com/nsys-agent/nsys-agent/plugins/shared"
	"github.com/nsys-agent/nsys-agent/plugins/shared/internal/scripted"
)

func main() { shared.Serve(scripted.New()) }
