package main

import (
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	_ "modernc.org/sqlite"
)

// benchAnalyze measures `nsys-agent analyze` on captures of n kernels in total (4
// ranks), as Kineto traces and as an nsys SQLite export, for each binary: wall and CPU
// time and peak RSS, which must not grow with n.
func benchAnalyze(bins []string, dir string, ranks int, counts []int, nsys bool) {
	for _, n := range counts {
		in := filepath.Join(dir, fmt.Sprintf("kernels-%dx%d", ranks, n))
		gz, raw := generateKernels(in, ranks, n)
		fmt.Printf("\n== %d kernels in %d ranks: Kineto %d MB gzipped, %d MB JSON (%s)\n", n, ranks, gz>>20, raw>>20, in)
		for _, b := range bins {
			r := measure(b, "analyze", "-o", "json", in)
			reportUnit("analyze ("+filepath.Base(b)+")", r, n, "kernels")
		}
		if !nsys {
			continue
		}
		db := filepath.Join(dir, fmt.Sprintf("kernels-%dx%d.sqlite", ranks, n))
		size := generateSQLite(db, ranks, n)
		fmt.Printf("-- the same as an nsys SQLite export: %d MB (%s)\n", size>>20, db)
		for _, b := range bins {
			r := measure(b, "analyze", "-o", "json", db)
			reportUnit("analyze ("+filepath.Base(b)+")", r, n, "kernels")
		}
	}
}

var benchKernels = []string{
	"sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64_warpgroupsize1x1x1_execute_segment_k_off_kernel__5x_cublas",
	"void flash::flash_fwd_kernel<Flash_fwd_kernel_traits<128, 128, 64, 4, false, false, cutlass::bfloat16_t, Flash_kernel_traits<128, 128, 64, 4, cutlass::bfloat16_t> >, false, true, false, false, true, true, false, false>(flash::Flash_fwd_params)",
	"void at::native::(anonymous namespace)::vectorized_layer_norm_kernel<c10::BFloat16, float>(int, float, c10::BFloat16 const*, c10::BFloat16 const*, c10::BFloat16 const*, float*, float*, c10::BFloat16*)",
	"ncclDevKernel_AllReduce_Sum_bf16_RING_LL(ncclDevKernelArgsStorage<4096ul>)",
}

// kernelStream yields one rank's kernels: 4 streams, each in time order, handed out in
// blocks of 1000 per stream (as CUPTI delivers its buffers), so the capture is ordered
// per stream but not overall; one memcpy per 50 kernels.
type kernelStream struct {
	rng    *rand.Rand
	clock  [4]int64
	stream int
	left   int // in the current block
}

type benchKernel struct {
	name          int // index in benchKernels; -1 for a memcpy
	stream        int
	start, dur, i int64
}

func newKernelStream(rank int) *kernelStream {
	return &kernelStream{rng: rand.New(rand.NewPCG(uint64(rank), 99)), clock: [4]int64{1e9, 1e9, 1e9, 1e9}}
}

func (k *kernelStream) next(i int64) benchKernel {
	if k.left == 0 {
		k.stream, k.left = k.rng.IntN(4), 1000
	}
	k.left--
	s := k.stream
	name := k.rng.IntN(len(benchKernels))
	if i%50 == 49 {
		name = -1
	}
	dur := 2000 + k.rng.Int64N(40000)
	start := k.clock[s] + k.rng.Int64N(3000)
	k.clock[s] = start + dur
	return benchKernel{name: name, stream: s, start: start, dur: dur, i: i}
}

// generateKernels writes ranks gzipped Kineto traces holding only GPU events (the
// kernels with Kineto's args and pretty-printing, ≈ 600 bytes each), n in total, or
// reuses them. It returns the gzipped and JSON sizes.
func generateKernels(dir string, ranks, n int) (gz, raw int64) {
	done := filepath.Join(dir, ".complete")
	if b, err := os.ReadFile(done); err == nil {
		raw, _ = strconv.ParseInt(string(b), 10, 64)
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if fi, err := e.Info(); err == nil && strings.HasSuffix(e.Name(), ".gz") {
				gz += fi.Size()
			}
		}
		return gz, raw
	}
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fail("%v", err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	for r := range ranks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := filepath.Join(dir, fmt.Sprintf("kernels-%d-TP-%d.trace.json.gz", n, r))
			w := writeKernelRank(p, r, n/ranks)
			fi, err := os.Stat(p)
			if err != nil {
				fail("%v", err)
			}
			mu.Lock()
			raw += w
			gz += fi.Size()
			mu.Unlock()
		}()
	}
	wg.Wait()
	os.WriteFile(done, []byte(strconv.FormatInt(raw, 10)), 0o644)
	return gz, raw
}

func writeKernelRank(path string, rank, n int) int64 {
	t := createTrace(path)
	w := t.Writer
	fmt.Fprintf(w, "{\n  \"schemaVersion\": 1,\n  \"baseTimeNanoseconds\": 1790857026000000000,\n  \"traceEvents\": [")
	ks := newKernelStream(rank)
	var b []byte
	for i := range int64(n) {
		k := ks.next(i)
		b = b[:0]
		if i > 0 {
			b = append(b, ',')
		}
		if k.name < 0 {
			b = append(b, "\n  {\n    \"ph\": \"X\", \"cat\": \"gpu_memcpy\", \"name\": \"Memcpy DtoD (Device -> Device)\", \"pid\": 0, \"tid\": "...)
			b = strconv.AppendInt(b, int64(7+k.stream), 10)
			b = append(b, ",\n    \"ts\": "...)
			b = appendMicros(b, k.start)
			b = append(b, ", \"dur\": "...)
			b = appendMicros(b, k.dur)
			b = append(b, ",\n    \"args\": {\n      \"device\": 0, \"context\": 1,\n      \"stream\": "...)
			b = strconv.AppendInt(b, int64(7+k.stream), 10)
			b = append(b, ", \"correlation\": "...)
			b = strconv.AppendInt(b, i, 10)
			b = append(b, ",\n      \"bytes\": 1048576, \"memory bandwidth (GB/s)\": 1520.4\n    }\n  }"...)
		} else {
			b = append(b, "\n  {\n    \"ph\": \"X\", \"cat\": \"kernel\", \"name\": "...)
			b = strconv.AppendQuote(b, benchKernels[k.name])
			b = append(b, ", \"pid\": 0, \"tid\": "...)
			b = strconv.AppendInt(b, int64(7+k.stream), 10)
			b = append(b, ",\n    \"ts\": "...)
			b = appendMicros(b, k.start)
			b = append(b, ", \"dur\": "...)
			b = appendMicros(b, k.dur)
			b = append(b, ",\n    \"args\": {\n      \"External id\": "...)
			b = strconv.AppendInt(b, i*3, 10)
			b = append(b, ",\n      \"queued\": 0, \"device\": 0, \"context\": 1,\n      \"stream\": "...)
			b = strconv.AppendInt(b, int64(7+k.stream), 10)
			b = append(b, ", \"correlation\": "...)
			b = strconv.AppendInt(b, i, 10)
			b = append(b, ",\n      \"registers per thread\": 168,\n      \"shared memory\": 213248,\n      \"blocks per SM\": 0.969697,\n      \"warps per SM\": 7.757576,\n      \"grid\": [128, 1, 1],\n      \"block\": [384, 1, 1],\n      \"est. achieved occupancy %\": 12\n    }\n  }"...)
		}
		w.Write(b)
	}
	return t.finish(path)
}

// appendMicros writes ns as microseconds with three decimals, Kineto's format.
func appendMicros(b []byte, ns int64) []byte {
	b = strconv.AppendInt(b, ns/1000, 10)
	frac := ns % 1000
	return append(b, '.', byte('0'+frac/100), byte('0'+frac/10%10), byte('0'+frac%10))
}

// generateSQLite writes the same kernels (and memcpys) into an nsys-shaped export: the
// columns analyze reads, one process per rank, rows in the same per-stream block order.
// It is reused when present.
func generateSQLite(path string, ranks, n int) int64 {
	if fi, err := os.Stat(path + ".complete"); err == nil && fi.Mode().IsRegular() {
		fi, _ := os.Stat(path)
		return fi.Size()
	}
	os.Remove(path)
	db, err := sql.Open("sqlite", path+"?_pragma=journal_mode(off)&_pragma=synchronous(off)")
	if err != nil {
		fail("%v", err)
	}
	defer db.Close()
	for _, q := range []string{
		`CREATE TABLE StringIds (id INTEGER NOT NULL PRIMARY KEY, value TEXT NOT NULL)`,
		`CREATE TABLE CUPTI_ACTIVITY_KIND_KERNEL (start INTEGER NOT NULL, end INTEGER NOT NULL, deviceId INTEGER NOT NULL,
			streamId INTEGER NOT NULL, correlationId INTEGER, globalPid INTEGER, demangledName INTEGER NOT NULL,
			shortName INTEGER NOT NULL, gridX INTEGER NOT NULL, blockX INTEGER NOT NULL, registersPerThread INTEGER NOT NULL)`,
		`CREATE TABLE CUPTI_ACTIVITY_KIND_MEMCPY (start INTEGER NOT NULL, end INTEGER NOT NULL, deviceId INTEGER NOT NULL,
			streamId INTEGER NOT NULL, correlationId INTEGER, globalPid INTEGER, bytes INTEGER NOT NULL, copyKind INTEGER NOT NULL)`,
	} {
		if _, err := db.Exec(q); err != nil {
			fail("%v", err)
		}
	}
	for i, k := range benchKernels {
		db.Exec(`INSERT INTO StringIds VALUES (?, ?), (?, ?)`, i, k, 100+i, strings.Fields(k)[0])
	}
	tx, err := db.Begin()
	if err != nil {
		fail("%v", err)
	}
	kern, err := tx.Prepare(`INSERT INTO CUPTI_ACTIVITY_KIND_KERNEL VALUES (?, ?, 0, ?, ?, ?, ?, ?, 128, 384, 168)`)
	if err != nil {
		fail("%v", err)
	}
	cp, err := tx.Prepare(`INSERT INTO CUPTI_ACTIVITY_KIND_MEMCPY VALUES (?, ?, 0, ?, ?, ?, 1048576, 8)`)
	if err != nil {
		fail("%v", err)
	}
	for r := range ranks {
		gpid := int64(0x1000000|(3000+r)) << 24
		ks := newKernelStream(r)
		for i := range int64(n / ranks) {
			k := ks.next(i)
			if k.name < 0 {
				_, err = cp.Exec(k.start, k.start+k.dur, 7+k.stream, i, gpid)
			} else {
				_, err = kern.Exec(k.start, k.start+k.dur, 7+k.stream, i, gpid, k.name, 100+k.name)
			}
			if err != nil {
				fail("%v", err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		fail("%v", err)
	}
	db.Close()
	os.WriteFile(path+".complete", nil, 0o644)
	fi, err := os.Stat(path)
	if err != nil {
		fail("%v", err)
	}
	return fi.Size()
}
