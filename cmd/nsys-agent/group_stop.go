package main

import (
	"context"

	"github.com/nsys-agent/nsys-agent/agent/windows"
)

// stopGroup stops every agent's window of group id in two bounded fan-outs: first the
// stops, at most groupFanOut at a time, none waiting for another's finalizing (a stop
// answers once the capture stopped); then, unless noWait, the windows are followed to
// their ends, again at most groupFanOut at a time. One fan-out doing both would hold the
// stop of agent 65 until agent 1's report was written: 1 000 agents' captures would end
// minutes apart. bar, for one agent, shows its finalizing.
func stopGroup(ctx context.Context, s *clientSetup, id string, noWait bool, bar *progressBar) []outcome {
	outs := boundedFanOut(ctx, s, groupFanOut, func(ctx context.Context, ac *apiClient) (any, error) {
		return stopWindow(ctx, s, ac, id, true, nil)
	})
	if noWait {
		return outs
	}
	byAgent := make(map[*apiClient]outcome, len(outs))
	for i, ac := range s.agents {
		byAgent[ac] = outs[i]
	}
	return boundedFanOut(ctx, s, groupFanOut, func(ctx context.Context, ac *apiClient) (any, error) {
		o := byAgent[ac]
		m, ok := o.value.(*windows.Manifest)
		if o.err != nil || !ok || m.State.Terminal() {
			return o.value, o.err
		}
		return followWindow(ctx, ac, m.ID, bar, 0)
	})
}
