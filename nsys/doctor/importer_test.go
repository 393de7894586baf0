package doctor

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nsys-agent/nsys-agent/nsys"
)

// TestParseLdd runs the parser over ldd output captured on the Debian 12 host (nsys
// 2022.4.2's QdstrmImporter whole, and a copy with libboost_atomic hidden, which ldd
// reports once per library that needs it).
func TestParseLdd(t *testing.T) {
	for _, tc := range []struct {
		file        string
		total       int
		missing     []string
		somePresent string // a library that must be resolved, with its path
	}{
		{file: "ldd-debian-qdstrmimporter.txt", total: 64, somePresent: "libpfm.so.4=/lib/x86_64-linux-gnu/libpfm.so.4"},
		{file: "ldd-one-missing.txt", total: 64, missing: []string{"libboost_atomic.so.1.78.0"}, somePresent: "libpapi.so.5=/opt/fake/host-linux-x64/libpapi.so.5"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			libs := parseLdd(string(raw))
			if len(libs) != tc.total {
				t.Errorf("%d libraries, want %d", len(libs), tc.total)
			}
			var missing []string
			paths := map[string]string{}
			for _, l := range libs {
				if l.Missing {
					missing = append(missing, l.Name)
				}
				paths[l.Name] = l.Path
			}
			if strings.Join(missing, ",") != strings.Join(tc.missing, ",") {
				t.Errorf("missing %v, want %v", missing, tc.missing)
			}
			name, path, _ := strings.Cut(tc.somePresent, "=")
			if paths[name] != path {
				t.Errorf("%s resolved to %q, want %q", name, paths[name], path)
			}
		})
	}
}

func TestParseLddLines(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []lib
	}{
		{"", nil},
		{"\tlinux-vdso.so.1 (0x00007ffd)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n", nil},
		{"\tlibdw.so.1 => not found\n", []lib{{Name: "libdw.so.1", Missing: true}}},
		{"\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n", []lib{{Name: "libc.so.6", Path: "/lib/x86_64-linux-gnu/libc.so.6"}}},
		// musl's ldd has no address on some lines; a warning line is not a library.
		{"\tlibz.so.1 => /lib/libz.so.1\nldd: warning: you do not have execution permission\n", []lib{{Name: "libz.so.1", Path: "/lib/libz.so.1"}}},
		{"\tlibdw.so.1 => not found\n\tlibdw.so.1 => not found\n", []lib{{Name: "libdw.so.1", Missing: true}}},
	} {
		got := parseLdd(tc.in)
		if len(got) != len(tc.want) {
			t.Errorf("parseLdd(%q) = %+v, want %+v", tc.in, got, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("parseLdd(%q)[%d] = %+v, want %+v", tc.in, i, got[i], tc.want[i])
			}
		}
	}
}

// FuzzParseLdd: any text parses without panicking into named, unique libraries, and a
// missing one has no path.
func FuzzParseLdd(f *testing.F) {
	for _, name := range []string{"ldd-debian-qdstrmimporter.txt", "ldd-one-missing.txt"} {
		raw, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(raw))
	}
	f.Add("\tlibdw.so.1 => not found\n")
	f.Fuzz(func(t *testing.T, in string) {
		seen := map[string]bool{}
		for _, l := range parseLdd(in) {
			if l.Name == "" || strings.ContainsAny(l.Name, " \t\n") || seen[l.Name] {
				t.Fatalf("bad or repeated name %q in %q", l.Name, in)
			}
			seen[l.Name] = true
			if l.Missing && l.Path != "" {
				t.Fatalf("missing %s has a path %q", l.Name, l.Path)
			}
		}
	})
}

func TestLibraryFix(t *testing.T) {
	for _, tc := range []struct {
		missing      []string
		want, absent string
	}{
		{[]string{"libdw.so.1"}, "libdw.so.1: install libdw1 (Debian/Ubuntu)", "apt-file"},
		{[]string{"libdw.so.1", "libelf.so.1"}, "libelf.so.1: install libelf1", "apt-file"},
		{[]string{"libboost_atomic.so.1.78.0"}, "apt-file search NAME", "libdw1"},
		{[]string{"libdw.so.1", "libfoo.so.2"}, "libdw.so.1: install libdw1 (Debian/Ubuntu) or elfutils-libs (RHEL/Fedora); for the others: install the packages", ""},
	} {
		got := libraryFix(tc.missing)
		if !strings.Contains(got, tc.want) || (tc.absent != "" && strings.Contains(got, tc.absent)) {
			t.Errorf("libraryFix(%v) = %q, want it to say %q and not %q", tc.missing, got, tc.want, tc.absent)
		}
	}
}

// TestCheckImporter: each way the importer can be unusable, over real files and the
// real ldd.
func TestCheckImporter(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "QdstrmImporter")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	sh, err := filepath.EvalSymlinks("/bin/sh")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, importer string
		status         Status
		finding        string
	}{
		{"not found", "", Fail, "QdstrmImporter not found beside /opt/nsys/bin/nsys"},
		{"not a program", script, Fail, "is not a dynamically linked program"},
		{"loads", sh, OK, "shared libraries found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &state{path: "/opt/nsys/bin/nsys", info: &nsys.Info{Importer: tc.importer}}
			rs := checkImporter(context.Background(), s)
			if len(rs) != 1 || rs[0].Status != tc.status || !strings.Contains(rs[0].Finding, tc.finding) {
				t.Fatalf("got %+v, want %s with %q", rs, tc.status, tc.finding)
			}
			if tc.status != OK && rs[0].Fix == "" {
				t.Error("a failure must say the fix")
			}
		})
	}
	if rs := checkImporter(context.Background(), &state{}); rs != nil {
		t.Errorf("without a working nsys the importer is not checked, got %+v", rs)
	}
}
