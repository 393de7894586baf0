package doctor

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// checkImporter finds QdstrmImporter beside nsys and checks that every shared library it
// needs loads. Debian's nsys 2022.4 never imports its own streams (docs/nsys-facts.md),
// and an nsys whose importer cannot load (libdw.so.1 missing on the H100 machine) leaves
// only a .qdstrm: the agent imports it with this binary, so a missing library fails
// every window.
func checkImporter(ctx context.Context, s *state) []Result {
	if s.info == nil {
		return nil
	}
	imp := s.info.Importer
	if imp == "" {
		return []Result{{Check: "importer", Status: Fail,
			Finding: "QdstrmImporter not found beside " + s.path + " (looked in host-* folders along its symlinks)",
			Fix:     "install the whole Nsight Systems package (its host-linux-x64 folder holds QdstrmImporter); without it nsys stop leaves only a .qdstrm nobody can open"}}
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	missing, n, err := missingLibraries(ctx, imp)
	var notELF *notDynamicError
	switch {
	case errors.As(err, &notELF):
		return []Result{{Check: "importer", Status: Fail, Finding: err.Error(),
			Fix: "reinstall Nsight Systems: " + imp + " should be a dynamically linked program"}}
	case err != nil:
		return []Result{{Check: "importer", Status: Warn,
			Finding: "QdstrmImporter at " + imp + ", its shared libraries unchecked: " + err.Error(),
			Fix:     "install ldd (Debian: libc-bin) so the doctor can check them"}}
	case len(missing) > 0:
		return []Result{{Check: "importer", Status: Fail,
			Finding: fmt.Sprintf("QdstrmImporter at %s cannot load %s", imp, listSome(missing, 4)),
			Fix:     libraryFix(missing)}}
	}
	return []Result{{Check: "importer", Status: OK, Finding: fmt.Sprintf("QdstrmImporter at %s, its %d shared libraries found", imp, n)}}
}

// notDynamicError: ldd says the file is not a dynamic executable.
type notDynamicError struct{ Path, Detail string }

func (e *notDynamicError) Error() string {
	return fmt.Sprintf("%s is not a dynamically linked program (ldd: %s)", e.Path, e.Detail)
}

// missingLibraries runs ldd on a program and returns the libraries the loader cannot
// find, and how many it needs in all. ldd resolves exactly as the loader will (RPATH
// $ORIGIN, LD_LIBRARY_PATH, ld.so.cache, transitively). ldd may run the program's own
// loader, so it is only ever pointed at the importer the agent would run anyway.
func missingLibraries(ctx context.Context, prog string) (missing []string, total int, err error) {
	ldd, err := exec.LookPath("ldd")
	if err != nil {
		return nil, 0, fmt.Errorf("ldd not found: %w", err)
	}
	out, err := exec.CommandContext(ctx, ldd, prog).CombinedOutput()
	text := string(out)
	if strings.Contains(text, "not a dynamic executable") {
		return nil, 0, &notDynamicError{Path: prog, Detail: firstLine(text, 200)}
	}
	libs := parseLdd(text)
	// ldd exits 1 when a library is missing on some libcs; the list is what counts.
	if err != nil && len(libs) == 0 {
		return nil, 0, fmt.Errorf("ldd %s: %v: %s", prog, err, firstLine(text, 200))
	}
	for _, l := range libs {
		if l.Missing {
			missing = append(missing, l.Name)
		}
	}
	return missing, len(libs), nil
}

// lib is one line of ldd's output.
type lib struct {
	Name    string
	Path    string // "" when missing or for the vdso / the loader itself
	Missing bool
}

// parseLdd reads glibc ldd output ("\tNAME => PATH (0xADDR)", "\tNAME => not found",
// "\tNAME (0xADDR)" for the vdso and the loader). Lines it does not recognise (ldd's
// own warnings) are skipped: only "=> not found" decides that a library is missing. A
// name is listed once: ldd repeats a missing library once per object that needs it (20
// times for a libboost hidden from Debian's QdstrmImporter).
func parseLdd(out string) []lib {
	var libs []lib
	seen := map[string]bool{}
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		name, rest, ok := strings.Cut(line, " => ")
		if !ok {
			continue // the vdso, the loader, or a message
		}
		name = strings.TrimSpace(name)
		if name == "" || strings.ContainsAny(name, " \t") {
			continue
		}
		if seen[name] {
			continue
		}
		seen[name] = true
		rest = strings.TrimSpace(rest)
		if rest == "not found" {
			libs = append(libs, lib{Name: name, Missing: true})
			continue
		}
		path, _, _ := strings.Cut(rest, " (")
		libs = append(libs, lib{Name: name, Path: strings.TrimSpace(path)})
	}
	return libs
}

// knownPackages names the distribution packages of libraries seen missing on real
// machines (libdw.so.1: the H100 machine's QdstrmImporter of nsys 2025.3.1).
var knownPackages = map[string]string{
	"libdw.so.1":   "libdw1 (Debian/Ubuntu) or elfutils-libs (RHEL/Fedora)",
	"libelf.so.1":  "libelf1 (Debian/Ubuntu) or elfutils-libelf (RHEL/Fedora)",
	"libpfm.so.4":  "libpfm4 (Debian/Ubuntu) or libpfm (RHEL/Fedora)",
	"libxcb.so.1":  "libxcb1 (Debian/Ubuntu) or libxcb (RHEL/Fedora)",
	"libnuma.so.1": "libnuma1 (Debian/Ubuntu) or numactl-libs (RHEL/Fedora)",
}

// libraryFix says what to install for the missing libraries: the package where known,
// otherwise how to find it.
func libraryFix(missing []string) string {
	var known []string
	for _, m := range missing {
		if p, ok := knownPackages[m]; ok {
			known = append(known, m+": install "+p)
		}
	}
	if len(known) == len(missing) {
		return strings.Join(known, "; ")
	}
	fix := "install the packages that provide them (Debian: apt-file search NAME), or, for libraries that ship with Nsight Systems, reinstall it whole; a folder holding them can also go in the agent's LD_LIBRARY_PATH"
	if len(known) > 0 {
		fix = strings.Join(known, "; ") + "; for the others: " + fix
	}
	return fix
}

// listSome lists up to n names and counts the rest.
func listSome(names []string, n int) string {
	if len(names) <= n {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:n], ", "), len(names)-n)
}
