package diskspace

import "testing"

func TestFreeAndHuman(t *testing.T) {
	n, err := Free(t.TempDir())
	if err != nil || n == 0 {
		t.Fatalf("free: %d %v", n, err)
	}
	if _, err := Free("/no/such/dir"); err == nil {
		t.Error("a missing folder has no free space to report")
	}
	for in, want := range map[uint64]string{0: "0 B", 1023: "1023 B", 1536: "1.5 KiB", 3 << 20: "3.0 MiB", 5 << 30: "5.0 GiB"} {
		if got := Human(in); got != want {
			t.Errorf("Human(%d) = %q, want %q", in, got, want)
		}
	}
}
