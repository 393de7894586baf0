// Package nsysdbtest makes changed copies of real nsys SQLite exports for tests: a host
// whose clock runs ahead, a rank with fewer kernels, a table dropped. The fixture itself
// stays as nsys wrote it.
package nsysdbtest

import (
	"database/sql"
	"os"
	"path/filepath"
	"testing"

	_ "modernc.org/sqlite" // the driver nsysdb reads with
)

// Copy writes the export src to dir/name, runs each SQL statement on the copy, and
// returns its path.
func Copy(t testing.TB, src, dir, name string, stmts ...string) string {
	t.Helper()
	raw, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if len(stmts) == 0 {
		return path
	}
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, s := range stmts {
		if _, err := db.Exec(s); err != nil {
			t.Fatalf("%s on a copy of %s: %v", s, src, err)
		}
	}
	return path
}
