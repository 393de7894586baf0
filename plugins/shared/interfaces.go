package shared

import "slices"

// Interface names an optional interface of the contract, as Info.Interfaces lists them.
type Interface string

const (
	InterfaceConfigurer Interface = "configurer"
	InterfaceFinalizer  Interface = "finalizer"
	InterfaceWaiter     Interface = "waiter"
	InterfaceSalvager   Interface = "salvager"
	InterfaceLauncher   Interface = "launcher"
)

// InterfacesOf lists the optional interfaces b's Go type implements, in the order above.
func InterfacesOf(b Backend) []Interface {
	var out []Interface
	if _, ok := b.(Configurer); ok {
		out = append(out, InterfaceConfigurer)
	}
	if _, ok := b.(Finalizer); ok {
		out = append(out, InterfaceFinalizer)
	}
	if _, ok := b.(Waiter); ok {
		out = append(out, InterfaceWaiter)
	}
	if _, ok := b.(Salvager); ok {
		out = append(out, InterfaceSalvager)
	}
	if _, ok := b.(Launcher); ok {
		out = append(out, InterfaceLauncher)
	}
	return out
}

// Implements reports whether the backend declared optional interface x.
func (i Info) Implements(x Interface) bool {
	return slices.Contains(i.Interfaces, x)
}
