package agent

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nsys-agent/nsys-agent/agent/windows"
)

// BenchmarkReadRoutes measures one request of each read route through the real handler
// (CPU and allocations per request; the load figures are scripts/bench-api's).
func BenchmarkReadRoutes(b *testing.B) {
	store, _ := windows.NewStore(b.TempDir())
	for i := 0; i < 232; i++ {
		at := time.Now().Add(-time.Duration(i) * time.Minute).UTC()
		_ = store.Save(&windows.Manifest{ID: windows.NewID(at), Backend: "nsys", State: windows.StateReady, CreatedAt: at, Artifacts: []windows.Artifact{{Name: "report.nsys-rep", Kind: "nsys-rep", Bytes: 4096, SHA256: "ab"}}})
	}
	reg, _ := windows.NewRegistry()
	mgr, _ := windows.New(windows.Options{Store: store, Backends: reg})
	defer mgr.Close(b.Context())
	h := NewHandler(&daemon{Manager: mgr, version: "bench"}, APIOptions{})
	for _, route := range []string{"/v1/health", "/v1/status", "/v1/windows"} {
		b.Run(route, func(b *testing.B) {
			b.ReportAllocs()
			req := httptest.NewRequest(http.MethodGet, route, nil)
			for b.Loop() {
				h.ServeHTTP(httptest.NewRecorder(), req)
			}
		})
	}
}
