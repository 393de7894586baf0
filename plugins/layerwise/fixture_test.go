package layerwise

import (
	"database/sql"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
)

// h100Export is the real 2-rank nsys 2025.3.1 export of an H100 (torchprof's fixture):
// ranks pid 627 and 628 replay a CUDA graph (3 kernels) per step inside an NVTX range
// rank<r>/step<n>; rank 1 (628) also launches one eager kernel per step (cuLaunchKernel).
const h100Export = "../../torchprof/testdata/nsys-h100/window1.sqlite"

// The fixture's threads that launch kernels.
const (
	tid627 = int64(281485496025715)
	tid628 = int64(281485512802932)
)

// pidNoKernels is a process the extension gives layer ranges and no kernels.
const pidNoKernels = 700

// unwrappedSteps: each rank's first steps get no layer ranges, so some kernels are
// launched outside any layer (as before a server's first forward in the window).
const unwrappedSteps = 10

// copyExport copies the fixture into dir, writable, so a test can add to it.
func copyExport(t *testing.T, dir string) string {
	t.Helper()
	return copyFile(t, h100Export, filepath.Join(dir, "report.sqlite"))
}

func copyFile(t *testing.T, from, dst string) string {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, src); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}

// marker is an SGLang layer range text as PytHooks writes it: the repr of a dict.
func marker(module string, extra string) string {
	s := fmt.Sprintf("{'Module': '%s'", module)
	if extra != "" {
		s += ", " + extra
	}
	return s + "}"
}

// SGLang-shaped range texts, with the keys its hook writes for such modules.
var (
	textModel     = marker("model", "'Inputs': [[7], [7]]")
	textModelBody = marker("model.model", "'Inputs': [[7], [7]]")
	textLayer0    = marker("model.model.layers.0", "'Inputs': [[7], [7, 4096]]")
	textAttn0     = marker("model.model.layers.0.self_attn", "'Inputs': [[7], [7, 4096]]")
	textQKV0      = marker("model.model.layers.0.self_attn.qkv_proj", "'TrainableParams': {'weight': [6144, 4096]}, 'Inputs': [[7, 4096]]")
	textLayer1    = marker("model.model.layers.1", "'Inputs': [[7], [7, 4096]]")
	textMLP1      = marker("model.model.layers.1.mlp", "'Inputs': [[7, 4096]]")
	textDown1     = marker("model.model.layers.1.mlp.down_proj", "'TrainableParams': {'weight': [4096, 11008], 'bias': [4096]}, 'Inputs': [[7, 11008]], 'StaticParams': {'in_features': 11008, 'out_features': 4096}")
	textHead      = marker("model.lm_head", "'TrainableParams': {'weight': [32000, 4096]}, 'Inputs': [[1, 4096]]")
)

// hostileModule is a valid layer range's module name that tries a spreadsheet formula and
// a terminal escape; hostileText is its range text, as Python's repr writes it.
const (
	hostileModule = "=HYPERLINK(\"http://x\")\x1b[31mred"
	hostileText   = `{'Module': '=HYPERLINK("http://x")\x1b[31mred'}`
)

// Hostile texts: each looks like a layer range and must be skipped, not crash or stall.
var hostileTexts = []string{
	"{'Module': 'model.model.layers.9.self_attn'",                                              // unterminated
	"{'Module': 'x', 'Inputs': " + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + "}", // too deep
	"{'Module': 'big', 'Inputs': [" + strings.Repeat("1, ", 30000) + "1]}",                     // too long
	"{'Module': 5}",             // not a string
	"{'Module': 'a\\x'}",        // bad escape
	"{'Module': ''}",            // empty
	"{'Module': 'ok'} trailing", // text after the dict
}

type call struct{ start, end int64 }

// nvtxRow is a range as nsys writes a push/pop range of the default domain (eventType 59,
// see ENUM_NSYS_EVENT_TYPE): text holds an unregistered string, textId a registered one.
type nvtxRow struct {
	tid, start, end int64
	text            string
	textID          int64 // 0: none
}

// extendedExport copies into dir the fixture extended with SGLang layer ranges around its
// real launch calls, on the threads that made them:
//
//	model                       the step (less 1 ns each side)
//	  model.model               the step (less 2 ns)
//	    model.model.layers.0            around the graph launch (±1000 ns)
//	      model.model.layers.0.self_attn  around it (±500 ns): the graph's 3 kernels
//	        ...self_attn.qkv_proj         before the launch: no kernel
//	    model.model.layers.1            around the eager launch (rank 628, ±1000 ns),
//	      model.model.layers.1.mlp        around it (±500 ns): its kernel
//	        ...mlp.down_proj              around it (±100 ns): its kernel, innermost
//	                                    (rank 627 has no eager launch: an empty slot after the graph)
//	  model.lm_head             after the last launch: no kernel
//
// for every step but the first unwrappedSteps. Step 5 of rank 627 holds the hostile
// texts around its graph launch, step 6 the hostile module name, step 7 a range whose
// text is a registered string (textId into StringIds). Process pidNoKernels gets ranges
// and no kernels. The fixture's own ranges rank<r>/step<n> stay: they are no layer range.
// The extension is built once per test binary (it is slow under -race) and copied.
func extendedExport(t *testing.T, dir string) string {
	t.Helper()
	extended.once.Do(func() {
		build, err := os.MkdirTemp("", "layerwise-fixture-")
		if err != nil {
			t.Fatal(err)
		}
		extended.dir = build
		extended.path = buildExtended(t, build)
	})
	if extended.path == "" {
		t.Fatal("building the extended fixture failed in an earlier test")
	}
	return copyFile(t, extended.path, filepath.Join(dir, "report.sqlite"))
}

var extended struct {
	once      sync.Once
	dir, path string
}

// removeFixtures removes what extendedExport built (from TestMain).
func removeFixtures() {
	if extended.dir != "" {
		os.RemoveAll(extended.dir)
	}
}

func buildExtended(t *testing.T, dir string) string {
	path := copyExport(t, dir)
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var rows []nvtxRow
	add := func(tid, start, end int64, text string) {
		rows = append(rows, nvtxRow{tid: tid, start: start, end: end, text: text})
	}
	var stringID int64
	if err := db.QueryRow(`SELECT MAX(id) + 1 FROM StringIds`).Scan(&stringID); err != nil {
		t.Fatal(err)
	}
	for _, tid := range []int64{tid627, tid628} {
		steps := spans(t, db, `SELECT start, end FROM NVTX_EVENTS WHERE globalTid = ? ORDER BY start`, tid)
		graphs := spans(t, db, `SELECT r.start, r.end FROM CUPTI_ACTIVITY_KIND_RUNTIME r JOIN StringIds s ON s.id = r.nameId
			WHERE r.globalTid = ? AND s.value LIKE 'cudaGraphLaunch%' ORDER BY r.start`, tid)
		eagers := spans(t, db, `SELECT r.start, r.end FROM CUPTI_ACTIVITY_KIND_RUNTIME r JOIN StringIds s ON s.id = r.nameId
			WHERE r.globalTid = ? AND s.value = 'cuLaunchKernel' ORDER BY r.start`, tid)
		for i, st := range steps {
			graph, eager := within(graphs, st), within(eagers, st)
			if len(graph) != 1 || len(eager) > 1 {
				t.Fatalf("step %d of thread %d: %d graph and %d eager launches; the fixture has one graph launch per step", i, tid, len(graph), len(eager))
			}
			g := graph[0]
			if tid == tid627 && i < unwrappedSteps {
				switch i {
				case 5:
					for _, h := range hostileTexts {
						add(tid, g.start-10, g.end+10, h)
					}
				case 6:
					add(tid, g.start-10, g.end+10, hostileText)
				case 7:
					if _, err := db.Exec(`INSERT INTO StringIds (id, value) VALUES (?, ?)`, stringID, marker("model.model.layers.2.mlp", "'Inputs': [[7, 4096]]")); err != nil {
						t.Fatal(err)
					}
					rows = append(rows, nvtxRow{tid: tid, start: g.start - 10, end: g.end + 10, textID: stringID})
				}
				continue
			}
			if i < unwrappedSteps {
				continue
			}
			add(tid, st.start+1, st.end-1, textModel)
			add(tid, st.start+2, st.end-2, textModelBody)
			add(tid, g.start-1000, g.end+1000, textLayer0)
			add(tid, g.start-500, g.end+500, textAttn0)
			add(tid, g.start-400, g.start-300, textQKV0)
			last := g.end + 1000
			if len(eager) == 1 {
				e := eager[0]
				add(tid, e.start-1000, e.end+1000, textLayer1)
				add(tid, e.start-500, e.end+500, textMLP1)
				add(tid, e.start-100, e.end+100, textDown1)
				last = e.end + 1000
			} else {
				add(tid, g.end+2000, g.end+3000, textLayer1)
				add(tid, g.end+2100, g.end+2900, textMLP1)
				last = g.end + 3000
			}
			add(tid, last+10, last+20, textHead)
		}
	}
	// A process with layer ranges and no kernels (same host and VM bits as the ranks).
	tidNoKernels := (tid627 &^ (1<<48 - 1)) | pidNoKernels<<24 | pidNoKernels
	for i := range int64(3) {
		add(tidNoKernels, 1000+100*i, 1090+100*i, textModel)
		add(tidNoKernels, 1010+100*i, 1080+100*i, textLayer0)
	}
	// Ranges that are no layer range: must be ignored.
	add(tid628, 1, 2, "{'foo': 1}")
	add(tid628, 3, 4, "not a dict")
	insertRanges(t, db, rows)
	return path
}

// within is the calls that started during span s (calls ordered by start).
func within(calls []call, s call) []call {
	i := sort.Search(len(calls), func(i int) bool { return calls[i].start >= s.start })
	j := sort.Search(len(calls), func(i int) bool { return calls[i].start >= s.end })
	return calls[i:j]
}

// insertRanges adds the rows to NVTX_EVENTS, many per statement (one statement per row
// took 20 s under -race).
func insertRanges(t *testing.T, db *sql.DB, rows []nvtxRow) {
	t.Helper()
	const per = 200
	for len(rows) > 0 {
		n := min(per, len(rows))
		var q strings.Builder
		q.WriteString(`INSERT INTO NVTX_EVENTS (start, end, eventType, text, textId, globalTid, domainId) VALUES `)
		args := make([]any, 0, 5*n)
		for i, r := range rows[:n] {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString("(?, ?, 59, ?, ?, ?, 0)")
			var text, id any
			if r.textID != 0 {
				id = r.textID
			} else {
				text = r.text
			}
			args = append(args, r.start, r.end, text, id, r.tid)
		}
		if _, err := db.Exec(q.String(), args...); err != nil {
			t.Fatal(err)
		}
		rows = rows[n:]
	}
}

func spans(t *testing.T, db interface {
	Query(string, ...any) (*sql.Rows, error)
}, q string, args ...any) []call {
	t.Helper()
	rows, err := db.Query(q, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []call
	for rows.Next() {
		var c call
		if err := rows.Scan(&c.start, &c.end); err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
