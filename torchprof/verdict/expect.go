package verdict

// Expect is what the window was supposed to hold. Every field is optional: a check
// whose expectation is absent does not run (Verdict.Skipped says so); none guesses.
type Expect struct {
	// PIDs are the target's processes expected to do GPU work in the window (the agent
	// knows which of its target's processes held a CUDA context).
	PIDs []int `json:"pids,omitempty"`
	// RankCount is how many ranks should appear (a torch window: the server's tp_size,
	// or its rank files; an nsys window: processes with kernels).
	RankCount int `json:"rank_count,omitempty"`
	// NoGPU says the target does no GPU work (none of its processes loaded the CUDA
	// driver, as the agent sees in /proc; the built-in demo target is such a program): a
	// window without kernels and without CUDA calls is then what it should be.
	NoGPU bool `json:"no_gpu,omitempty"`
	// NVTX says NVTX ranges were asked for (layerwise markers, step ranges).
	NVTX bool `json:"nvtx,omitempty"`
	// CapturedSeconds is how long the window captured. When zero, the export's own
	// ANALYSIS_DETAILS duration is used.
	CapturedSeconds float64 `json:"captured_seconds,omitempty"`
	// ReportBytes is the report's size; when zero, checks of a report file stat it.
	ReportBytes int64 `json:"report_bytes,omitempty"`
	// SizeBudgetPerSecond is the report size per captured second above which the
	// window gets a warning; zero turns the check off.
	SizeBudgetPerSecond int64 `json:"size_budget_per_second,omitempty"`
}

// DefaultSizeBudgetPerSecond is 50 MiB per captured second. Measured on an H100 (see
// docs/nsys-facts.md): CPU sampling made a 4 s window 2 GB (500 MB/s); without it the
// same window was 130 kB, and a 12 s window of two ranks replaying CUDA graphs about
// 0.9 MB. A busy inference server launching tens of thousands of kernels a second stays
// well under 50 MiB/s; a report above it almost always traces something nobody asked for.
const DefaultSizeBudgetPerSecond int64 = 50 << 20
