// Package sharedtest gives a backend's tests the same gRPC wire the agent will talk to it
// over, in process: the plugin's server side and the host's client side of plugins/shared,
// connected by go-plugin's plugin.TestPluginGRPCConn. A backend that passes its tests
// through it has every request and answer encoded, sent and mapped as in production
// (errors included); only the process boundary is missing.
package sharedtest

import (
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/nsys-agent/nsys-agent/plugins/shared"
)

// Connect serves b over in-process gRPC and returns the host's Backend for it: the value
// the agent dispenses from a plugin, which also implements every optional interface. The
// connection closes when the test ends.
func Connect(t testing.TB, b shared.Backend) shared.Backend {
	t.Helper()
	client, server := plugin.TestPluginGRPCConn(t, false, shared.PluginMap(b))
	t.Cleanup(func() {
		// Close asks the server to stop (go-plugin's controller Shutdown); stopping it
		// here as well would race with that stop inside go-plugin.
		_ = client.Close()
		select {
		case <-server.DoneCh:
		case <-time.After(10 * time.Second):
			t.Errorf("the in-process plugin server did not stop 10 s after its client closed")
		}
	})
	raw, err := client.Dispense(shared.PluginName)
	if err != nil {
		t.Fatalf("dispensing %q over in-process gRPC: %v", shared.PluginName, err)
	}
	backend, ok := raw.(shared.Backend)
	if !ok {
		t.Fatalf("dispensed %T, want a shared.Backend", raw)
	}
	return backend
}
