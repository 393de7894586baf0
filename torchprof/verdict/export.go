package verdict

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/nsys-agent/nsys-agent/torchprof/nsysdb"
)

// exportStats is what the completeness checks read from one nsys SQLite export. Every
// number is aggregated in SQL (GROUP BY process), so memory does not grow with the
// number of kernels, only with the number of processes.
type exportStats struct {
	tables map[string]bool
	procs  map[int]*procStats
	// durationNs is ANALYSIS_DETAILS.duration, the span of the whole capture (0 when absent).
	durationNs int64
	// graphMode is META_DATA_CAPTURE's CUDA_GRAPH_TRACE_OPTIONS:MODE ("Node", "Graph"),
	// "" when the export does not say.
	graphMode string
}

// procStats counts one process's CUDA activity in the window.
type procStats struct {
	pid       int
	kernels   int64 // CUPTI_ACTIVITY_KIND_KERNEL rows
	graphRows int64 // CUPTI_ACTIVITY_KIND_GRAPH_TRACE rows: whole-graph executions
	calls     int64 // CUDA runtime and driver API rows of any kind
	nvtx      int64 // NVTX ranges (rows with an end)
	// Launches made outside a stream capture and that returned success, and how many of
	// them have a GPU-side record with their correlation id; kernel launches and graph
	// launches apart.
	kernelLaunches, kernelRecorded int64
	graphLaunches, graphRecorded   int64
	// captured counts launches made while a stream capture was open on their thread:
	// they are recorded into a graph, not run, and have no GPU record.
	captured int64
}

func (s *exportStats) proc(pid int) *procStats {
	p := s.procs[pid]
	if p == nil {
		p = &procStats{pid: pid}
		s.procs[pid] = p
	}
	return p
}

// UnreadableError says an export could not be read as an nsys SQLite export.
type UnreadableError struct {
	Path string
	Err  error
}

func (e *UnreadableError) Error() string { return fmt.Sprintf("%s: %v", e.Path, e.Err) }
func (e *UnreadableError) Unwrap() error { return e.Err }

// readExport opens an export read-only and aggregates what the checks need. A file
// that is not an SQLite database, or one missing the tables every CUDA export has, is
// an *UnreadableError; a cancelled ctx is returned as is.
func readExport(ctx context.Context, path string) (*exportStats, error) {
	db, err := nsysdb.Open(path, true)
	if err != nil {
		return nil, &UnreadableError{path, err}
	}
	defer db.Close()
	s := &exportStats{procs: map[int]*procStats{}}
	s.tables, err = nsysdb.Tables(ctx, db)
	if err != nil {
		return nil, unreadable(ctx, path, fmt.Errorf("not an SQLite database: %w", err))
	}
	if !s.tables["StringIds"] {
		return nil, &UnreadableError{path, errors.New("no StringIds table: not an nsys export")}
	}
	type perPid struct {
		table, pidCol, where string
		into                 func(p *procStats, n int64)
	}
	for _, q := range []perPid{
		{"CUPTI_ACTIVITY_KIND_KERNEL", "globalPid", "", func(p *procStats, n int64) { p.kernels = n }},
		{"CUPTI_ACTIVITY_KIND_GRAPH_TRACE", "globalPid", "", func(p *procStats, n int64) { p.graphRows = n }},
		{"CUPTI_ACTIVITY_KIND_RUNTIME", "globalTid", "", func(p *procStats, n int64) { p.calls = n }},
		{"NVTX_EVENTS", "globalTid", "WHERE end IS NOT NULL", func(p *procStats, n int64) { p.nvtx = n }},
	} {
		if !s.tables[q.table] {
			continue
		}
		err := nsysdb.Rows(ctx, db, `SELECT `+nsysdb.PIDExpr(q.pidCol)+`, count(*) FROM `+q.table+` `+q.where+` GROUP BY 1`, func(r *sql.Rows) error {
			var pid int
			var n int64
			if err := r.Scan(&pid, &n); err != nil {
				return err
			}
			q.into(s.proc(pid), n)
			return nil
		})
		if err != nil {
			return nil, unreadable(ctx, path, fmt.Errorf("%s: %w", q.table, err))
		}
	}
	if s.tables["CUPTI_ACTIVITY_KIND_RUNTIME"] {
		if err := readLaunches(ctx, db, s); err != nil {
			return nil, unreadable(ctx, path, fmt.Errorf("matching launches with GPU records: %w", err))
		}
	}
	// The optional facts: their absence changes no count.
	if s.tables["ANALYSIS_DETAILS"] {
		var d sql.NullInt64
		if err := db.QueryRowContext(ctx, `SELECT max(duration) FROM ANALYSIS_DETAILS`).Scan(&d); err == nil {
			s.durationNs = d.Int64
		}
	}
	if s.tables["META_DATA_CAPTURE"] {
		// One row per launched process (PROCESS_0, ...); any one in graph mode counts.
		var m sql.NullString
		err := db.QueryRowContext(ctx, `SELECT value FROM META_DATA_CAPTURE
			WHERE name LIKE '%CUDA_GRAPH_TRACE_OPTIONS:MODE' ORDER BY value = 'Graph' DESC LIMIT 1`).Scan(&m)
		if err == nil {
			s.graphMode = m.String
		}
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return s, nil
}

// readLaunches counts, per process, the kernel and graph launches and how many of them
// the GPU side recorded, matched on (process, correlationId): nsys gives a kernel (and,
// traced by graph, a whole-graph row; a memcpy or memset node) the correlation id of the
// API call that launched it (measured on nsys 2025.3.1, docs/nsys-facts.md).
//
// A launch made while a stream capture is open on its thread is recorded into a graph,
// not run, and has no GPU record (measured the same way): such launches are counted
// apart. A graph launch has one GPU record per node, all with its correlation id:
// the GPU side is deduplicated before the join. Capture state is a running count of Begin (+1) and End (-1) capture calls per
// thread in time order; a thread whose first capture call is an End was capturing when
// the window opened, so its count starts at minus its lowest running value.
func readLaunches(ctx context.Context, db *sql.DB, s *exportStats) error {
	var gpu []string
	for _, t := range []string{"CUPTI_ACTIVITY_KIND_KERNEL", "CUPTI_ACTIVITY_KIND_GRAPH_TRACE",
		"CUPTI_ACTIVITY_KIND_MEMCPY", "CUPTI_ACTIVITY_KIND_MEMSET"} {
		if s.tables[t] {
			gpu = append(gpu, `SELECT `+nsysdb.PIDExpr("globalPid")+` AS pid, correlationId AS c FROM `+t+` WHERE correlationId IS NOT NULL`)
		}
	}
	if len(gpu) == 0 {
		gpu = []string{`SELECT NULL AS pid, NULL AS c WHERE 0`}
	}
	// Most windows capture no graph: without capture calls in the export the running
	// count is always 0, and its window function (a sort of every launch; 2 of the 3.7 s
	// that an export of 1.7 million CUDA rows took) is skipped.
	depth := "0"
	var captures int64
	err := db.QueryRowContext(ctx, `SELECT count(*) FROM StringIds
		WHERE value LIKE '%StreamBeginCapture%' OR value LIKE '%StreamEndCapture%'`).Scan(&captures)
	if err != nil {
		return err
	}
	if captures > 0 {
		depth = `SUM(CASE n.kind WHEN 3 THEN 1 WHEN 4 THEN -1 ELSE 0 END)
				OVER (PARTITION BY r.globalTid ORDER BY r.start, r.rowid ROWS UNBOUNDED PRECEDING)`
	}
	q := `WITH names AS (
		SELECT id, CASE
			WHEN value LIKE 'cudaGraphLaunch%' OR value LIKE 'cuGraphLaunch%' THEN 2
			WHEN (value LIKE 'cudaLaunch%' OR value LIKE 'cuLaunch%') AND value NOT LIKE '%HostFunc%' THEN 1
			WHEN value LIKE '%StreamBeginCapture%' THEN 3
			WHEN value LIKE '%StreamEndCapture%' THEN 4
		END AS kind FROM StringIds
	), calls AS (
		SELECT r.globalTid AS tid, r.correlationId AS c, n.kind AS kind, ` + depth + ` AS depth
		FROM CUPTI_ACTIVITY_KIND_RUNTIME r JOIN names n ON n.id = r.nameId
		WHERE n.kind IS NOT NULL AND r.returnValue = 0 AND r.globalTid IS NOT NULL
	), launches AS (
		SELECT ` + nsysdb.PIDExpr("tid") + ` AS pid, c, kind,
			depth - MIN(MIN(depth, 0)) OVER (PARTITION BY tid) > 0 AS captured
		FROM calls
	), gpu AS (SELECT DISTINCT pid, c FROM (` + strings.Join(gpu, " UNION ALL ") + `))
	SELECT l.pid, l.kind, count(*), sum(l.captured), sum(NOT l.captured AND g.c IS NOT NULL)
	FROM launches l LEFT JOIN gpu g ON g.pid = l.pid AND g.c = l.c
	WHERE l.kind IN (1, 2)
	GROUP BY l.pid, l.kind`
	return nsysdb.Rows(ctx, db, q, func(r *sql.Rows) error {
		var pid, kind int
		var n, captured, recorded int64
		if err := r.Scan(&pid, &kind, &n, &captured, &recorded); err != nil {
			return err
		}
		p := s.proc(pid)
		p.captured += captured
		if kind == 2 {
			p.graphLaunches, p.graphRecorded = n-captured, recorded
		} else {
			p.kernelLaunches, p.kernelRecorded = n-captured, recorded
		}
		return nil
	})
}

func unreadable(ctx context.Context, path string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return &UnreadableError{path, err}
}
