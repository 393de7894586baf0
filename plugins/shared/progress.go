package shared

// ProgressEvent is one step of a long Stop or Finalize: a step name for people and how
// far along the window is (0..1).
type ProgressEvent struct {
	Step     string  `json:"step"`
	Fraction float64 `json:"fraction"`
}

// Progress receives a backend's progress events. In process the agent implements it; over
// gRPC it is the server stream of the Stop and Finalize RPCs. Send never blocks for long
// and never fails: progress is advisory.
type Progress interface {
	Send(ProgressEvent)
}

// Discard is a Progress that drops every event.
var Discard Progress = discard{}

type discard struct{}

func (discard) Send(ProgressEvent) {}
