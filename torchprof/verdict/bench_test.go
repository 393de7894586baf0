package verdict

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"strings"
	"testing"
)

// grownExport is a copy of the H100 export with every kernel and CUDA call repeated
// times times (new correlation ids, runtime rows shifted in time), for the cost of the
// checks on a large window.
func grownExport(b *testing.B, times int) string {
	b.Helper()
	p := copyFile(b, nsysFixture, b.TempDir(), "window1.sqlite")
	db, err := sql.Open("sqlite", p)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	for i := 1; i < times; i++ {
		off := i * 100000 // above the fixture's largest correlation id (11810)
		for _, q := range []string{
			`INSERT INTO CUPTI_ACTIVITY_KIND_KERNEL SELECT start, end, deviceId, contextId, greenContextId, streamId,
				correlationId + ?1, globalPid, demangledName, shortName, mangledName, launchType, cacheConfig,
				registersPerThread, gridX, gridY, gridZ, blockX, blockY, blockZ, staticSharedMemory, dynamicSharedMemory,
				localMemoryPerThread, localMemoryTotal, gridId, sharedMemoryExecuted, graphNodeId, sharedMemoryLimitConfig
				FROM CUPTI_ACTIVITY_KIND_KERNEL WHERE correlationId < 100000`,
			`INSERT INTO CUPTI_ACTIVITY_KIND_RUNTIME SELECT start + ?1, end + ?1, eventClass, globalTid, correlationId + ?1,
				nameId, returnValue, callchainId FROM CUPTI_ACTIVITY_KIND_RUNTIME WHERE correlationId < 100000`,
		} {
			if _, err := db.Exec(q, off); err != nil {
				b.Fatal(err)
			}
		}
	}
	return p
}

// peakRSS is this process's peak resident memory (VmHWM), in MiB.
func peakRSS() float64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		var kb float64
		if _, err := fmt.Sscanf(l, "VmHWM: %f kB", &kb); err == nil {
			return kb / 1024
		}
	}
	return 0
}

// BenchmarkCheckExport: go test -run - -bench CheckExport ./torchprof/verdict (the
// 300× export takes a minute to build). Peak RSS is reported to show memory does not
// follow the number of rows.
func BenchmarkCheckExport(b *testing.B) {
	for _, times := range []int{1, 30, 300} {
		b.Run(fmt.Sprintf("x%d", times), func(b *testing.B) {
			p := grownExport(b, times)
			fi, _ := os.Stat(p)
			b.ResetTimer()
			for range b.N {
				v, err := CheckExport(context.Background(), p, Expect{RankCount: 2})
				if err != nil || v.Level != OK {
					b.Fatalf("%v %+v", err, v)
				}
			}
			b.ReportMetric(float64(fi.Size())/(1<<20), "MiB-export")
			b.ReportMetric(peakRSS(), "MiB-peak-RSS")
		})
	}
}
