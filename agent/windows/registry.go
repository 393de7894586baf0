package windows

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/nsys-agent/nsys-agent/plugins/shared"
)

// Entry is a backend the agent knows: usable, or known but not usable now and why.
type Entry struct {
	Info        shared.Info    `json:"info"`
	Backend     shared.Backend `json:"-"`
	Unavailable string         `json:"unavailable,omitempty"` // why windows cannot use it ("" = usable)
}

// EntryOf fingerprints a backend with its Info; unavailable says why windows cannot use
// it now ("" = they can). A backend built for another contract version is unusable.
func EntryOf(ctx context.Context, b shared.Backend, unavailable string) (Entry, error) {
	info, err := b.Info(ctx)
	if err != nil {
		return Entry{}, fmt.Errorf("asking a backend for its info: %w", err)
	}
	if info.Name == "" {
		return Entry{}, fmt.Errorf("a backend answered Info without a name")
	}
	if info.APIVersion != shared.APIVersion && unavailable == "" {
		unavailable = fmt.Sprintf("built for backend API version %d; this agent speaks %d", info.APIVersion, shared.APIVersion)
	}
	return Entry{Info: info, Backend: b, Unavailable: unavailable}, nil
}

// Registry is the one list of backends by name, in registration order; the first usable
// one is the default of a window that names none.
type Registry struct {
	entries []Entry
}

// NewRegistry lists entries; a later entry with the name of an earlier one is refused.
func NewRegistry(entries ...Entry) (*Registry, error) {
	r := &Registry{}
	for _, e := range entries {
		if _, dup := r.Lookup(e.Info.Name); dup {
			return nil, fmt.Errorf("two backends are named %q", e.Info.Name)
		}
		r.entries = append(r.entries, e)
	}
	return r, nil
}

// Lookup finds a backend by name, usable or not.
func (r *Registry) Lookup(name string) (Entry, bool) {
	i := slices.IndexFunc(r.entries, func(e Entry) bool { return e.Info.Name == name })
	if i < 0 {
		return Entry{}, false
	}
	return r.entries[i], true
}

// Entries lists every known backend.
func (r *Registry) Entries() []Entry { return slices.Clone(r.entries) }

// Usable names the backends windows can use now, in registration order.
func (r *Registry) Usable() []string {
	var names []string
	for _, e := range r.entries {
		if e.Unavailable == "" {
			names = append(names, e.Info.Name)
		}
	}
	return names
}

// Default is the backend of a window that names none.
func (r *Registry) Default() string {
	if u := r.Usable(); len(u) > 0 {
		return u[0]
	}
	return ""
}

// pick resolves a request's backend to a usable one, or says which ones are.
func (r *Registry) pick(name string) (Entry, error) {
	if name == "" {
		name = r.Default()
	}
	usable := "none"
	if u := r.Usable(); len(u) > 0 {
		usable = strings.Join(u, ", ")
	}
	e, ok := r.Lookup(name)
	if ok && e.Unavailable == "" {
		// A backend may lose its target while the agent runs (nsys: a session shut down
		// after a hung stop); it says so through an optional Unavailable method.
		if u, can := e.Backend.(interface{ Unavailable() string }); can {
			e.Unavailable = u.Unavailable()
		}
	}
	switch {
	case name == "":
		return Entry{}, errorf(ErrInvalid, "backend: this agent has no usable backend ('nsys-agent backends' says why)")
	case !ok:
		return Entry{}, errorf(ErrInvalid, "backend: unknown backend %q (this agent has: %s)", name, usable)
	case e.Unavailable != "":
		return Entry{}, errorf(ErrInvalid, "backend: %s cannot capture on this agent: %s (usable: %s)", name, e.Unavailable, usable)
	}
	return e, nil
}
