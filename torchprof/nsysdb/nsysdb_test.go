package nsysdb

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// The H100 export's first process, as its README says: globalPid 627 << 24.
func TestPID(t *testing.T) {
	if got := PID(627<<24 | 5); got != 627 {
		t.Errorf("PID = %d", got)
	}
	if PIDExpr("globalTid") != "((globalTid >> 24) & 16777215)" {
		t.Errorf("PIDExpr = %s", PIDExpr("globalTid"))
	}
}

func TestOpenRealExport(t *testing.T) {
	path := "../testdata/nsys-h100/window1.sqlite"
	db, err := Open(path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	tables, err := Tables(ctx, db)
	if err != nil || !tables["CUPTI_ACTIVITY_KIND_KERNEL"] {
		t.Fatalf("tables %v, %v", tables, err)
	}
	pids := map[int]int{}
	err = Rows(ctx, db, `SELECT `+PIDExpr("globalPid")+`, COUNT(*) FROM CUPTI_ACTIVITY_KIND_KERNEL GROUP BY 1`, func(r *sql.Rows) error {
		var pid, n int
		if err := r.Scan(&pid, &n); err != nil {
			return err
		}
		pids[pid] = n
		return nil
	})
	// The fixture README: pid 627 1164 kernels, pid 628 1524.
	if err != nil || pids[627] != 1164 || pids[628] != 1524 {
		t.Errorf("kernels by pid %v, %v", pids, err)
	}
}

func TestOpenRefuses(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "x.sqlite")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(fifo, true); err == nil {
		t.Error("a FIFO named like an export was opened")
	}
	notDB := filepath.Join(dir, "y.sqlite")
	if err := os.WriteFile(notDB, []byte(strings.Repeat("not sqlite ", 100)), 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := Open(notDB, true)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := Tables(context.Background(), db); err == nil {
		t.Error("a file that is not SQLite listed tables")
	}
}
