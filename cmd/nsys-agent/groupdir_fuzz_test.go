package main

import (
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzGroupRecord feeds readGroupFolder any group.json beside two small host folders: it
// must never panic, and whatever it accepts stays inside the folder (a host from the
// record is one path element, its traces regular files within it) with offsets only from
// members it names. Seeds: testdata/fuzz/FuzzGroupRecord.
func FuzzGroupRecord(f *testing.F) {
	f.Add([]byte(`{"id":"g-a","members":[{"agent":"http://h1:7477","host":"h1_7477","offset_ns":5,"rtt_ns":9},{"agent":"x","host":"h2_7477"}]}`))
	f.Add([]byte(`{"id":"g-a","members":[{"host":"../h1_7477"}]}`))
	f.Fuzz(func(t *testing.T, record []byte) {
		dir := t.TempDir()
		for _, h := range []string{"h1_7477", "h2_7477"} {
			if err := os.Mkdir(filepath.Join(dir, h), 0o755); err != nil {
				t.Fatal(err)
			}
			fz, err := os.Create(filepath.Join(dir, h, "p-TP-0.trace.json.gz"))
			if err != nil {
				t.Fatal(err)
			}
			zw := gzip.NewWriter(fz)
			zw.Write([]byte(`{"traceEvents": []}`))
			zw.Close()
			fz.Close()
		}
		if err := os.WriteFile(filepath.Join(dir, groupRecordName), record, 0o644); err != nil {
			t.Fatal(err)
		}
		g, err := readGroupFolder(dir)
		if err != nil {
			return
		}
		for _, h := range g.Hosts {
			rel, err := filepath.Rel(dir, h.Dir)
			if err != nil || strings.HasPrefix(rel, "..") || strings.Contains(h.Name, "/") {
				t.Errorf("host %q reads %s, outside %s", h.Name, h.Dir, dir)
			}
			for _, rf := range h.Files {
				if rf.Host != h.Name || (rf.HostOffsetKnown && !offsetKnown(h.Member)) {
					t.Errorf("file %+v of host %q", rf, h.Name)
				}
				if fi, err := os.Lstat(rf.Path); err != nil || !fi.Mode().IsRegular() {
					t.Errorf("%s: not a regular file: %v", rf.Path, err)
				}
			}
		}
	})
}
