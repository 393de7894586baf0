// Package gztest reads gzipped files in tests (rank traces, merged traces), the one copy
// of what five test files each wrote for themselves.
package gztest

import (
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"testing"
)

// Read returns the gunzipped content of path; any error fails the test.
func Read(t testing.TB, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: not gzip: %v", path, err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return b
}

// ReadJSON decodes the gzipped JSON document at path into a T; any error fails the test.
func ReadJSON[T any](t testing.TB, path string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(Read(t, path), &v); err != nil {
		t.Fatalf("%s: not JSON: %v", path, err)
	}
	return v
}
