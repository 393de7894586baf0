package demotarget

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/nsys-agent/nsys-agent/internal/atomicfile"
)

// The trace format is Kineto's Chrome trace as torch.profiler's export_chrome_trace writes
// it (shapes copied from real H100 traces in torchprof/testdata/kineto-h100-2rank): CPU ops on
// the worker's pid/tid, GPU kernels on the device track pid 0 / stream tid 7, "ac2g" flow
// events linking each cudaLaunchKernel to its kernel, and "M" metadata naming the tracks.

const (
	gpuPID    = 0 // Kineto puts device N's activity on pid N; every demo rank uses device 0
	gpuStream = 7 // the default compute stream id seen in real traces
	procName  = "nsys-agent"
)

// traceEvent is one Chrome trace event. Pid and tid are numbers, except in Kineto's trailer
// events ("Spans", "Traces"), which mergers must cope with.
type traceEvent struct {
	Ph   string         `json:"ph"`
	Cat  string         `json:"cat,omitempty"`
	Name string         `json:"name"`
	PID  any            `json:"pid"`
	TID  any            `json:"tid"`
	TS   float64        `json:"ts"`
	Dur  float64        `json:"dur,omitempty"`
	ID   int64          `json:"id,omitempty"`
	BP   string         `json:"bp,omitempty"`
	S    string         `json:"s,omitempty"`
	Args map[string]any `json:"args,omitempty"`
}

type deviceProperties struct {
	ID                         int    `json:"id"`
	Name                       string `json:"name"`
	TotalGlobalMem             int64  `json:"totalGlobalMem"`
	ComputeMajor               int    `json:"computeMajor"`
	ComputeMinor               int    `json:"computeMinor"`
	MaxThreadsPerBlock         int    `json:"maxThreadsPerBlock"`
	MaxThreadsPerMultiprocesor int    `json:"maxThreadsPerMultiprocessor"`
	RegsPerBlock               int    `json:"regsPerBlock"`
	WarpSize                   int    `json:"warpSize"`
	SharedMemPerBlock          int    `json:"sharedMemPerBlock"`
	NumSms                     int    `json:"numSms"`
	RegsPerMultiprocessor      int    `json:"regsPerMultiprocessor"`
	SharedMemPerBlockOptin     int    `json:"sharedMemPerBlockOptin"`
	SharedMemPerMultiprocessor int    `json:"sharedMemPerMultiprocessor"`
}

// simulatedDevice says in its name that it is not real, so nobody reads a demo trace as a
// measurement of an A100.
var simulatedDevice = deviceProperties{
	ID: 0, Name: "NVIDIA A100-SXM4-80GB (simulated by nsys-agent demo)", TotalGlobalMem: 85899345920,
	ComputeMajor: 8, ComputeMinor: 0, MaxThreadsPerBlock: 1024, MaxThreadsPerMultiprocesor: 2048,
	RegsPerBlock: 65536, WarpSize: 32, SharedMemPerBlock: 49152, NumSms: 108,
	RegsPerMultiprocessor: 65536, SharedMemPerBlockOptin: 166912, SharedMemPerMultiprocessor: 167936,
}

type distributedInfo struct {
	Backend     string     `json:"backend"`
	Rank        int        `json:"rank"`
	WorldSize   int        `json:"world_size"`
	PGCount     int        `json:"pg_count"`
	PGConfig    []pgConfig `json:"pg_config"`
	NCCLVersion string     `json:"nccl_version"`
}

type pgConfig struct {
	PGName        string `json:"pg_name"`
	PGDesc        string `json:"pg_desc"`
	BackendConfig string `json:"backend_config"`
	PGSize        int    `json:"pg_size"`
	Ranks         []int  `json:"ranks"`
}

// traceHeader holds the top-level keys that come before traceEvents, in Kineto's order.
type traceHeader struct {
	SchemaVersion       int                `json:"schemaVersion"`
	DeviceProperties    []deviceProperties `json:"deviceProperties"`
	DistributedInfo     *distributedInfo   `json:"distributedInfo,omitempty"`
	TraceID             string             `json:"trace_id"`
	WithStack           int                `json:"with_stack,omitempty"`
	RecordShapes        int                `json:"record_shapes,omitempty"`
	CUDADriverVersion   int                `json:"cuda_driver_version"`
	CUDARuntimeVersion  int                `json:"cuda_runtime_version"`
	CUPTIVersion        int                `json:"cupti_version"`
	DisplayTimeUnit     string             `json:"displayTimeUnit"`
	BaseTimeNanoseconds int64              `json:"baseTimeNanoseconds"`
}

func newTraceHeader(rank, worldSize int, traceID string, p profileArgs) traceHeader {
	ranks := make([]int, worldSize)
	for i := range ranks {
		ranks[i] = i
	}
	h := traceHeader{
		SchemaVersion:    1,
		DeviceProperties: []deviceProperties{simulatedDevice},
		DistributedInfo: &distributedInfo{
			Backend: "nccl", Rank: rank, WorldSize: worldSize, PGCount: 1,
			PGConfig: []pgConfig{{PGName: "0", PGDesc: "default_pg", BackendConfig: "cuda:nccl",
				PGSize: worldSize, Ranks: ranks}},
			NCCLVersion: "2.21.5",
		},
		TraceID:             traceID,
		CUDADriverVersion:   12040,
		CUDARuntimeVersion:  12040,
		CUPTIVersion:        24,
		DisplayTimeUnit:     "ms",
		BaseTimeNanoseconds: p.BaseNanos,
	}
	if p.WithStack {
		h.WithStack = 1
	}
	if p.RecordShapes {
		h.RecordShapes = 1
	}
	return h
}

// writeTrace writes a trace with one event per line, as Kineto does, so that line-based
// tools and people with zcat | less can read it.
func writeTrace(w io.Writer, h traceHeader, events []traceEvent, traceName string) error {
	head, err := json.Marshal(h)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	bw.Write(head[:len(head)-1]) // leave the object open for traceEvents
	bw.WriteString(",\n\"traceEvents\": [\n")
	for i := range events {
		b, err := json.Marshal(&events[i])
		if err != nil {
			return fmt.Errorf("encode trace event %q: %w", events[i].Name, err)
		}
		if i > 0 {
			bw.WriteString(",\n")
		}
		bw.Write(b)
	}
	name, _ := json.Marshal(traceName)
	bw.WriteString("\n],\n\"traceName\": ")
	bw.Write(name)
	bw.WriteString("\n}\n")
	return bw.Flush()
}

// writeGzipAtomic writes path through a hidden temporary file in the same folder and renames
// it, so that a client polling output_dir for *.trace.json.gz never opens half a file.
func writeGzipAtomic(path string, write func(io.Writer) error) error {
	f, err := atomicfile.New(path, 0o644) // traces are shared, as SGLang's are
	if err != nil {
		return err
	}
	defer f.Abort()
	zw := gzip.NewWriter(f)
	if err := write(zw); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return f.Commit()
}

// usTS turns a wall-clock time into Kineto's ts: microseconds after baseTimeNanoseconds,
// with nanosecond precision.
func usTS(t time.Time, baseNanos int64) float64 {
	return float64(t.UnixNano()-baseNanos) / 1e3
}

func usDur(d time.Duration) float64 {
	us := float64(d.Nanoseconds()) / 1e3
	return max(us, 0.001) // an "X" event without dur is not a complete event
}

// mergeTraces is the demo's stand-in for SGLang's ProfileMerger (merge_profiles: true): it
// loads every rank fully, renames pids to "[TPnn] <pid>", gives device tracks (pid < 1000)
// a sort index of pid + 100*tp, concatenates deviceProperties and keeps the first file's
// other keys. It is small on purpose; the product merger lives in torchprof.
func mergeTraces(out string, rankFiles []string) error {
	type rankTrace struct {
		keys   map[string]json.RawMessage
		events []map[string]any
	}
	var all []rankTrace
	for tp, path := range rankFiles {
		keys, err := readTraceKeys(path)
		if err != nil {
			return err
		}
		var events []map[string]any
		dec := json.NewDecoder(bytes.NewReader(keys["traceEvents"]))
		dec.UseNumber()
		if err := dec.Decode(&events); err != nil {
			return fmt.Errorf("merge: traceEvents of %s: %w", path, err)
		}
		for _, ev := range events {
			pid := ev["pid"]
			if ev["ph"] == "M" && ev["name"] == "process_sort_index" {
				if n, ok := pid.(json.Number); ok {
					if v, err := n.Int64(); err == nil && v < 1000 {
						if args, ok := ev["args"].(map[string]any); ok {
							args["sort_index"] = v + 100*int64(tp)
						}
					}
				}
			}
			ev["pid"] = fmt.Sprintf("[TP%02d] %v", tp, pid)
		}
		all = append(all, rankTrace{keys: keys, events: events})
	}
	if len(all) == 0 {
		return fmt.Errorf("merge: no rank traces")
	}
	return writeGzipAtomic(out, func(w io.Writer) error {
		bw := bufio.NewWriter(w)
		bw.WriteString("{\"traceEvents\": [\n")
		first := true
		for _, rt := range all {
			for _, ev := range rt.events {
				b, err := json.Marshal(ev)
				if err != nil {
					return err
				}
				if !first {
					bw.WriteString(",\n")
				}
				first = false
				bw.Write(b)
			}
		}
		bw.WriteString("\n]")
		for _, k := range []string{"schemaVersion", "distributedInfo", "trace_id", "with_stack",
			"record_shapes", "cuda_driver_version", "cuda_runtime_version", "cupti_version",
			"displayTimeUnit", "baseTimeNanoseconds", "traceName"} {
			if v, ok := all[0].keys[k]; ok {
				fmt.Fprintf(bw, ",\n%q: %s", k, v)
			}
		}
		var devs []json.RawMessage
		for _, rt := range all {
			var d []json.RawMessage
			if err := json.Unmarshal(rt.keys["deviceProperties"], &d); err == nil {
				devs = append(devs, d...)
			}
		}
		b, err := json.Marshal(devs)
		if err != nil {
			return err
		}
		fmt.Fprintf(bw, ",\n\"deviceProperties\": %s\n}\n", b)
		return bw.Flush()
	})
}

func readTraceKeys(path string) (map[string]json.RawMessage, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("read trace %s: %w", path, err)
	}
	var keys map[string]json.RawMessage
	if err := json.NewDecoder(zr).Decode(&keys); err != nil {
		return nil, fmt.Errorf("read trace %s: %w", path, err)
	}
	return keys, nil
}
