package shared

import (
	"context"
	"errors"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	backendv1 "github.com/nsys-agent/nsys-agent/proto/backend/v1"
)

// Handshake is what the agent and a backend plugin must agree on before anything else.
// The cookie never changes: it only tells a plugin binary that the agent started it (a
// person who runs one by hand is told so). The protocol version is the contract's
// APIVersion and changes only on a breaking change; go-plugin refuses a plugin built for
// another one, naming both numbers.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  APIVersion,
	MagicCookieKey:   "NSYS_AGENT_BACKEND_PLUGIN",
	MagicCookieValue: "5ee2abcff394acb75d191e4db571c5fbca29ca2547a7f0c4",
}

// PluginName is the one plugin kind a backend binary serves, as the host dispenses it:
// rpcClient.Dispense(PluginName) returns a Backend.
const PluginName = "backend"

// PluginMap is the plugin set both sides hand go-plugin: on the plugin's side with the
// backend it serves, on the host's side with b nil.
func PluginMap(b Backend) map[string]plugin.Plugin {
	return map[string]plugin.Plugin{PluginName: &GRPCBackendPlugin{Impl: b}}
}

// GRPCBackendPlugin is the go-plugin glue of a backend, gRPC only.
type GRPCBackendPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	// Impl is the backend served; nil on the host's side.
	Impl Backend
}

var _ plugin.GRPCPlugin = (*GRPCBackendPlugin)(nil)

// errNoImpl: the host's plugin set (Impl nil) was handed to a server.
var errNoImpl = errors.New("plugins/shared: GRPCBackendPlugin has no backend to serve (PluginMap(nil) is the host's side)")

// GRPCServer registers the backend's service on the plugin's gRPC server.
func (p *GRPCBackendPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	if p.Impl == nil {
		return errNoImpl
	}
	backendv1.RegisterBackendServer(s, &server{impl: p.Impl, log: hclog.L().Named("backend")})
	return nil
}

// GRPCClient returns the host's Backend over conn. doneCtx is go-plugin's: cancelled when
// the plugin process exits, and bound to every call.
func (p *GRPCBackendPlugin) GRPCClient(doneCtx context.Context, _ *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	return &client{rpc: backendv1.NewBackendClient(conn), doneCtx: doneCtx}, nil
}
