package verdict

// The finding IDs. They are a contract: a Prometheus counter is labelled by them,
// scripts match them, manifests keep them. Add new ones; never rename or reuse one.
const (
	// IDNoKernels: not one GPU kernel in the whole window (nsys), or in one rank's
	// trace (Kineto, with Rank set).
	IDNoKernels = "no-kernels"
	// IDRankMissing: an expected rank (a pid, or one of RankCount) left no GPU work or
	// no trace in the window.
	IDRankMissing = "rank-missing"
	// IDLaunchesWithoutKernels: a process launched kernels on the CPU side and not one
	// of them was recorded on the GPU side.
	IDLaunchesWithoutKernels = "launches-without-kernels"
	// IDLaunchesPartlyRecorded: a large share of a process's launches have no GPU record.
	IDLaunchesPartlyRecorded = "launches-partly-recorded"
	// IDGraphNotNode: CUDA graph launches were traced as whole graphs, so the kernels
	// inside them are not in the report.
	IDGraphNotNode = "graph-not-node"
	// IDNVTXMissing: NVTX ranges were expected and are absent (in the window, or on a rank).
	IDNVTXMissing = "nvtx-missing"
	// IDReportSize: the report is larger per captured second than the budget.
	IDReportSize = "report-size"
	// IDReportMissing: the window has no report: only a .qdstrm stream, or nothing.
	IDReportMissing = "report-missing"
	// IDReportUnreadable: the report or its SQLite export cannot be read.
	IDReportUnreadable = "report-unreadable"
	// IDTraceUnreadable: a Kineto rank trace is missing or does not parse.
	IDTraceUnreadable = "trace-unreadable"
	// IDMergedTraceInvalid: the merged trace does not parse, or lost events of the ranks.
	IDMergedTraceInvalid = "merged-trace-invalid"
	// IDEventsSkipped: a reader skipped malformed events (counts in the message).
	IDEventsSkipped = "events-skipped"
	// IDSlowdownAfter: the server's throughput stayed below its level before the window
	// for the whole span measured after it (the agent's cost measurement).
	IDSlowdownAfter = "slowdown-after"
)

// IDs lists every finding ID, so a counter can be created for each before any is seen.
var IDs = []string{
	IDNoKernels, IDRankMissing, IDLaunchesWithoutKernels, IDLaunchesPartlyRecorded,
	IDGraphNotNode, IDNVTXMissing, IDReportSize, IDReportMissing, IDReportUnreadable,
	IDTraceUnreadable, IDMergedTraceInvalid, IDEventsSkipped, IDSlowdownAfter,
}
