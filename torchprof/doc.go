// Package torchprof reads torch-profiler (Kineto) Chrome traces and Nsight Systems SQLite
// exports of multi-rank LLM inference servers.
//
// It does two things, both streaming and both bounded in memory:
//
//   - Merge writes one Chrome trace from per-rank traces, equivalent to what SGLang's
//     ProfileMerger writes (pid labels such as "[TP00-DP01] 435", rewritten
//     process_sort_index, concatenated deviceProperties, first file wins for other
//     top-level keys), without ever holding a whole trace in memory.
//   - AnalyzeKineto and AnalyzeNsysSQLite say, per rank, where GPU time went and which
//     rank is slow; (*Summary).WriteHTML renders that for people.
//
// Discover finds the per-rank files that SGLang and vLLM write and parses their names.
package torchprof
