// Package nsysdb opens nsys SQLite exports (`nsys export --type sqlite`) for reading: the
// one place that knows how, for torchprof's analysis, the window verdict and the
// layerwise table.
package nsysdb

import (
	"context"
	"database/sql"
	"fmt"

	_ "modernc.org/sqlite" // pure-Go SQLite: no cgo, no libsqlite3 on the host

	"github.com/nsys-agent/nsys-agent/internal/regularfile"
)

// Open opens the export at path read-only. It must be a regular file: SQLite would block
// opening a FIFO, and with followLinks false a planted link is refused. The database is
// opened immutable (nsys never changes an export once written), so reading takes no
// locks and writes nothing beside it.
func Open(path string, followLinks bool) (*sql.DB, error) {
	f, err := regularfile.Open(path, followLinks)
	if err != nil {
		return nil, err
	}
	f.Close()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&immutable=1")
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	return db, nil
}

// Tables names the export's tables. An error here is the first sign that the file is not
// an SQLite database at all.
func Tables(ctx context.Context, db *sql.DB) (map[string]bool, error) {
	tables := map[string]bool{}
	err := Rows(ctx, db, `SELECT name FROM sqlite_master WHERE type = 'table'`, func(r *sql.Rows) error {
		var n string
		if err := r.Scan(&n); err != nil {
			return err
		}
		tables[n] = true
		return nil
	})
	return tables, err
}

// Rows runs q and calls each for every row, in order; the first error ends it.
func Rows(ctx context.Context, db *sql.DB, q string, each func(*sql.Rows) error) error {
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := each(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// PID is the process id inside an nsys globalPid or globalTid: bits 24 to 47.
func PID(global int64) int { return int((global >> 24) & 0xFFFFFF) }

// PIDExpr is PID in SQL, over the column col.
func PIDExpr(col string) string { return "((" + col + " >> 24) & 16777215)" }
