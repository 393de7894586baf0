package main

import (
	"context"

	"github.com/nsys-agent/nsys-agent/agent/fleet"
)

// groupFanOut bounds how many agents a group command talks to at once — start --wait's
// event streams, pull's downloads, show's reads — as the coordinator bounds its own calls
// (agent/fleet, Options.Concurrency): a group of 1 000 agents never means 1 000 open
// streams or downloads at one instant. The agents past the bound wait their turn; a
// stream that starts late still reads its window's state first, so a window that ended
// meanwhile is seen at once. A variable for tests.
var groupFanOut = fleet.DefaultConcurrency

// boundedFanOut is fanOut with at most limit agents at a time, outcomes in --agent order.
func boundedFanOut(ctx context.Context, s *clientSetup, limit int, fn func(ctx context.Context, c *apiClient) (any, error)) []outcome {
	sem := make(chan struct{}, max(limit, 1))
	return fanOut(ctx, s, func(ctx context.Context, c *apiClient) (any, error) {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		defer func() { <-sem }()
		return fn(ctx, c)
	})
}
