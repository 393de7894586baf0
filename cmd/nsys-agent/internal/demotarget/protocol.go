package demotarget

import "time"

// The parent and each worker talk over the worker's stdin/stdout, one JSON object per line:
// the parent sends a command and waits for exactly one reply. Only the scheduler goroutine
// of the parent talks to workers, so there is never more than one command in flight.

// Operations.
const (
	opInit  = "init"  // configure the worker; reply carries its pid
	opStep  = "step"  // run one forward step
	opStart = "start" // start recording a profile
	opStop  = "stop"  // stop recording and write the trace file(s)
)

type command struct {
	Op      string       `json:"op"`
	Init    *initArgs    `json:"init,omitempty"`
	Step    *stepArgs    `json:"step,omitempty"`
	Profile *profileArgs `json:"profile,omitempty"`
	// Stage limits a stop to one stage's trace (profile_by_stage); empty means all.
	Stage string `json:"stage,omitempty"`
}

type initArgs struct {
	Rank      int           `json:"rank"`
	WorldSize int           `json:"world_size"`
	StepWork  time.Duration `json:"step_work"` // CPU work of one decode step on a rank of speed 1
	StepGap   time.Duration `json:"step_gap"`  // idle time after each step (through libc when cgo is on)
	Slowdown  float64       `json:"slowdown"`  // this rank's work multiplier (the straggler has > 1)
}

type stepArgs struct {
	N       int64 `json:"n"`       // absolute step number (SGLang's forward_ct)
	Prefill bool  `json:"prefill"` // an extend batch: more work than a decode step
	Tokens  int   `json:"tokens"`  // tokens in the batch
}

type profileArgs struct {
	ID           string `json:"id"`     // SGLang's profile id, unix time with microseconds
	Dir          string `json:"dir"`    // output_dir, already created by the parent
	Prefix       string `json:"prefix"` // profile_prefix, may be empty
	CPU          bool   `json:"cpu"`
	GPU          bool   `json:"gpu"`
	WithStack    bool   `json:"with_stack"`
	RecordShapes bool   `json:"record_shapes"`
	ByStage      bool   `json:"by_stage"`
	BaseNanos    int64  `json:"base_ns"` // baseTimeNanoseconds shared by all ranks, so ts line up
}

type reply struct {
	Op    string   `json:"op"`
	PID   int      `json:"pid,omitempty"`
	N     int64    `json:"n,omitempty"`
	Files []string `json:"files,omitempty"` // traces written by a stop
	Err   string   `json:"err,omitempty"`
}
