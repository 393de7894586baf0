package torchprof

import (
	"context"
	"testing"
)

const nsysFixture = "../../shared/fixtures/nsys-h100/window1.sqlite"

func TestAnalyzeNsysSQLite(t *testing.T) {
	s, err := AnalyzeNsysSQLite(context.Background(), nsysFixture)
	if err != nil {
		t.Fatal(err)
	}
	// Exact figures from the fixture's README.
	want := []struct {
		pid      int
		kernels  int64
		kernelNs int64
	}{{627, 1164, 269151984}, {628, 1524, 393975752}}
	if len(s.Ranks) != len(want) {
		t.Fatalf("%d ranks, want %d", len(s.Ranks), len(want))
	}
	for i, w := range want {
		r := s.Ranks[i]
		if r.Pid != w.pid || r.Kernels != w.kernels || r.KernelNs != w.kernelNs {
			t.Errorf("rank %d: pid %d, %d kernels, %d ns; want pid %d, %d kernels, %d ns",
				i, r.Pid, r.Kernels, r.KernelNs, w.pid, w.kernels, w.kernelNs)
		}
		if r.CommNs != 0 || r.ComputeNs != r.KernelNs {
			t.Errorf("rank %d: comm %d ns, compute %d ns: the fixture has no communication", i, r.CommNs, r.ComputeNs)
		}
		if r.BusyNs <= 0 || r.BusyNs > r.KernelNs {
			t.Errorf("rank %d: busy %d ns outside (0, kernel time %d]", i, r.BusyNs, r.KernelNs)
		}
		if r.Input != "python3" {
			t.Errorf("rank %d: process name %q", i, r.Input)
		}
	}
	if s.SlowestRank != "pid 628" || s.FastestRank != "pid 627" {
		t.Errorf("slowest %q fastest %q, want pid 628 and pid 627", s.SlowestRank, s.FastestRank)
	}
	if got, want := s.Imbalance, round3(393975752.0/269151984); got != want {
		t.Errorf("imbalance %v, want %v", got, want)
	}
	var steps int
	for _, r := range s.Ranks {
		steps += len(r.Steps)
	}
	t.Logf("%+v", s.Ranks[1].Top)
	t.Logf("reason: %s; steps %d", s.Reason, steps)
}

func TestAnalyzeKinetoFixture(t *testing.T) {
	files, err := Discover(kinetoFixture)
	if err != nil {
		t.Fatal(err)
	}
	s, err := AnalyzeKineto(context.Background(), files)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range s.Ranks {
		t.Logf("%s kernels %d kernelNs %d busy %d comm %d steps %d top %+v", r.Label, r.Kernels, r.KernelNs, r.BusyNs, r.CommNs, len(r.Steps), r.Top[0])
	}
	t.Logf("slowest %s imbalance %v reason %s", s.SlowestRank, s.Imbalance, s.Reason)
}
