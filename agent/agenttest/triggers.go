package agenttest

import (
	"context"

	"github.com/nsys-agent/nsys-agent/agent/triggers"
	"github.com/nsys-agent/nsys-agent/agent/windows"
)

func (s *Service) Triggers(ctx context.Context) []triggers.Status { return s.triggers.List() }

func (s *Service) AddTrigger(ctx context.Context, spec triggers.Spec, who windows.Requester) (*triggers.Status, error) {
	st, err := s.triggers.Add(spec)
	if err != nil {
		return nil, err
	}
	return &st, nil
}

// Line feeds one line of the fake target's output to its log triggers.
func (s *Service) Line(line string) {
	s.lineMu.Lock()
	subs := make([]func(string), 0, len(s.lineSubs))
	for _, fn := range s.lineSubs {
		subs = append(subs, fn)
	}
	s.lineMu.Unlock()
	for _, fn := range subs {
		fn(line)
	}
}

func (s *Service) subscribeLines(fn func(string)) func() {
	s.lineMu.Lock()
	defer s.lineMu.Unlock()
	if s.lineSubs == nil {
		s.lineSubs = map[int]func(string){}
	}
	id := s.lineNext
	s.lineNext++
	s.lineSubs[id] = fn
	return func() {
		s.lineMu.Lock()
		delete(s.lineSubs, id)
		s.lineMu.Unlock()
	}
}
