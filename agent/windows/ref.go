package windows

// Window references: what every method taking a window (Window, StopWindow, DeleteWindow,
// PinWindow, ArtifactPath, SetGroup, the annotations) accepts, and so every API route
// with {id}. One resolver, so a group id works wherever a window id does.

// resolveLocked finds the window ref names: a window id, "active" or "-" (the window
// requested or capturing now), or a group id (this agent's window of that group, issue
// 14). m.mu is held.
func (m *Manager) resolveLocked(ref string) (*Manifest, error) {
	id := ref
	switch {
	case ref == "active" || ref == "-":
		if m.active == "" {
			return nil, errorf(ErrNotFound, "no window is requested or capturing now; list them with 'nsys-agent windows'")
		}
		id = m.active
	case ValidGroupID(ref):
		if w := m.groupWindowLocked(ref); w != nil {
			return w, nil
		}
		return nil, errorf(ErrNotFound, "this agent has no window of group %s; list them with 'nsys-agent windows'", ref)
	}
	if w, ok := m.windows[id]; ok {
		return w, nil
	}
	return nil, errorf(ErrNotFound, "no window %q; list them with 'nsys-agent windows'", ref)
}

// resolve is resolveLocked for callers that do not hold m.mu: the id of the window ref
// names.
func (m *Manager) resolve(ref string) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	w, err := m.resolveLocked(ref)
	if err != nil {
		return "", err
	}
	return w.ID, nil
}

// groupWindowLocked is this agent's window of group g, or nil (g == "": nil). A create
// refuses a second window of a group, so there is one; should a data dir hold more (copied
// by hand), the newest is the one named. m.mu is held.
func (m *Manager) groupWindowLocked(g string) *Manifest {
	if g == "" {
		return nil
	}
	var found *Manifest
	for _, w := range m.windows {
		if w.Group == g && (found == nil || w.ID > found.ID) {
			found = w
		}
	}
	return found
}
