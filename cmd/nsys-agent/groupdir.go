package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nsys-agent/nsys-agent/agent/windows"
	"github.com/nsys-agent/nsys-agent/internal/regularfile"
	"github.com/nsys-agent/nsys-agent/torchprof"
)

// A pulled group folder (issue 14): DIR/group.json, the coordinator's record of the
// group (a windows.GroupRecord: every member's host folder name and clock offset), and
// DIR/<member.Host>/ holding that member's window files, as `pull GROUP` writes it.
// merge and analyze take such a folder as one capture of several hosts. A folder of host
// subfolders without group.json is taken too, with every host's clock offset unknown.

// groupRecordName is the group record's file name in a pulled group folder.
const groupRecordName = "group.json"

// maxGroupRecordBytes bounds group.json: windows.MaxGroupMembers members of about 300
// bytes each fit in 1 MiB; anything much larger is no record the coordinator wrote.
const maxGroupRecordBytes = 4 << 20

// groupFolder is a pulled group folder, read.
type groupFolder struct {
	Dir    string
	Record *windows.GroupRecord // nil without group.json: no host's offset is known
	Hosts  []groupHost          // group.json's member order, else by name
	// Missing are members of group.json without a folder (not pulled); Ignored are
	// subfolders holding rank traces that group.json does not list; LeftOut are members
	// a `start --min-members` went on without (no folder: they captured nothing), with why.
	Missing []string
	Ignored []string
	LeftOut []string
}

// groupHost is one host's folder and its capture: rank traces (torch windows), or one
// nsys report or export (nsys windows).
type groupHost struct {
	Name   string
	Dir    string               // where its capture is
	Member *windows.GroupMember // nil when group.json does not list it
	Files  []torchprof.RankFile
	// Nsys is the host's .sqlite export, or its .nsys-rep when it has none ("" for traces).
	Nsys string
}

// offsetKnown says whether the coordinator measured this member's clock: a measured
// offset comes with a round trip (RTTNs > 0; on loopback it is still microseconds),
// while a member that failed before its clock was probed has every clock field zero.
func offsetKnown(m *windows.GroupMember) bool {
	return m != nil && (m.RTTNs > 0 || m.UncertaintyNs > 0 || m.OffsetNs != 0)
}

// isGroupFolder says whether dir is a pulled group folder: it has group.json, or holds
// no rank trace of its own but subfolders that do.
func isGroupFolder(dir string) bool {
	if fi, err := os.Lstat(filepath.Join(dir, groupRecordName)); err == nil && fi.Mode().IsRegular() {
		return true
	}
	if hasRankTraces(dir) {
		return false
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		if e.IsDir() && hostFolderCandidate(dir, e.Name()) {
			return true
		}
	}
	return false
}

// hostFolderCandidate says whether dir/name, without group.json, looks like a host
// folder: it holds rank traces (or one window folder that does) and is not itself a
// window folder. `pull WINDOW --dir D` writes D/<window-id>/ with a manifest.json whose id
// is the folder's name: a folder of those is several windows of one agent, not hosts.
func hostFolderCandidate(dir, name string) bool {
	if !validHostFolder(name) {
		return false
	}
	sub := filepath.Join(dir, name)
	if _, _, err := captureDir(sub); err != nil {
		return false
	}
	return windowFolderID(sub) != name
}

// windowFolderID is the id in dir/manifest.json, "" when there is none to read.
func windowFolderID(dir string) string {
	f, err := regularfile.Open(filepath.Join(dir, "manifest.json"), false)
	if err != nil {
		return ""
	}
	defer f.Close()
	var m struct {
		ID string `json:"id"`
	}
	if json.NewDecoder(io.LimitReader(f, maxGroupRecordBytes)).Decode(&m) != nil {
		return ""
	}
	return m.ID
}

// hasRankTraces says whether dir itself holds per-rank trace files.
func hasRankTraces(dir string) bool {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	return slices.ContainsFunc(entries, func(e os.DirEntry) bool {
		_, ok := torchprof.ParseName(e.Name())
		return ok
	})
}

// nsysCapture is the one nsys capture a window folder holds: its .sqlite export (what a
// pulled window of the nsys backend carries beside its report), else its .nsys-rep; ""
// when it holds neither; an error when it holds several.
func nsysCapture(dir string) (string, error) {
	for _, ext := range []string{".sqlite", ".nsys-rep"} {
		found, _ := filepath.Glob(filepath.Join(dir, "*"+ext))
		switch len(found) {
		case 0:
			continue
		case 1:
			return found[0], nil
		}
		return "", fmt.Errorf("%s holds %d %s files: keep one window per host folder", dir, len(found), ext)
	}
	return "", nil
}

// captureDir is where a host folder's capture is: the folder itself (`pull GROUP`), or
// its only window folder (`pull WINDOW --agent A,B` writes DIR/<host>/<window-id>/); with
// the nsys capture's path when it is one (rank traces come first).
func captureDir(hostDir string) (dir, nsysFile string, err error) {
	has := func(d string) (string, bool) {
		if hasRankTraces(d) {
			return "", true
		}
		f, err := nsysCapture(d)
		return f, err == nil && f != ""
	}
	if f, ok := has(hostDir); ok {
		return hostDir, f, nil
	}
	if _, err := nsysCapture(hostDir); err != nil {
		return "", "", err
	}
	entries, err := os.ReadDir(hostDir)
	if err != nil {
		return "", "", err
	}
	var found []string
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		sub := filepath.Join(hostDir, e.Name())
		if _, ok := has(sub); ok {
			found = append(found, e.Name())
		} else if _, err := nsysCapture(sub); err != nil {
			return "", "", err
		}
	}
	switch len(found) {
	case 0:
		return "", "", fmt.Errorf("%s holds no capture (per-rank *.trace.json.gz, or one .nsys-rep or .sqlite): the window of this host wrote none (a failed window, or not pulled)", hostDir)
	case 1:
		sub := filepath.Join(hostDir, found[0])
		f, _ := has(sub)
		return sub, f, nil
	}
	return "", "", fmt.Errorf("%s holds the captures of %d windows (%s): keep one window per host folder", hostDir, len(found), strings.Join(found, ", "))
}

// readGroupFolder reads a group folder: its record, each host's rank traces with the
// host's clock offset. Host folders must be real folders named by group.json (or, without
// it, the subfolders), and the traces regular files: nothing is followed out of dir.
func readGroupFolder(dir string) (*groupFolder, error) {
	g := &groupFolder{Dir: dir}
	rec, err := readGroupRecord(filepath.Join(dir, groupRecordName))
	if err != nil {
		return nil, err
	}
	g.Record = rec
	var names []string
	members := map[string]*windows.GroupMember{}
	if rec != nil {
		for i := range rec.Members {
			m := &rec.Members[i]
			if !validHostFolder(m.Host) {
				return nil, fmt.Errorf("%s: member %s has host %q, which is no folder name; the record is damaged", filepath.Join(dir, groupRecordName), m.Agent, m.Host)
			}
			if members[m.Host] != nil {
				return nil, fmt.Errorf("%s: two members share the host folder %q; the record is damaged", filepath.Join(dir, groupRecordName), m.Host)
			}
			members[m.Host] = m
			names = append(names, m.Host)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if !e.IsDir() || members[e.Name()] != nil || !hostFolderCandidate(dir, e.Name()) {
			continue
		}
		if rec != nil {
			g.Ignored = append(g.Ignored, e.Name())
			continue
		}
		names = append(names, e.Name()) // ReadDir's order: by name
	}
	for _, name := range names {
		h := groupHost{Name: name, Member: members[name]}
		hostDir := filepath.Join(dir, name)
		fi, err := os.Lstat(hostDir)
		if errors.Is(err, os.ErrNotExist) {
			if m := h.Member; m != nil && m.Error != "" && m.StartedAt == nil && g.Record.State == "capturing" {
				g.LeftOut = append(g.LeftOut, name+": "+m.Error)
			} else {
				g.Missing = append(g.Missing, name)
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("%s is not a folder (%s): a pulled group folder holds one real folder per host", hostDir, fi.Mode().Type())
		}
		if h.Dir, h.Nsys, err = captureDir(hostDir); err != nil {
			return nil, hostError(h, err)
		}
		if h.Nsys != "" {
			if fi, err := os.Lstat(h.Nsys); err != nil || !fi.Mode().IsRegular() {
				return nil, fmt.Errorf("%s is not a regular file: a pulled group folder holds the reports themselves, never links", h.Nsys)
			}
			g.Hosts = append(g.Hosts, h)
			continue
		}
		if h.Files, err = torchprof.Discover(h.Dir); err != nil {
			return nil, hostError(h, err)
		}
		for i := range h.Files {
			rf := &h.Files[i]
			if fi, err := os.Lstat(rf.Path); err != nil || !fi.Mode().IsRegular() {
				return nil, fmt.Errorf("%s is not a regular file: a pulled group folder holds the traces themselves, never links", rf.Path)
			}
			rf.Host = name
			if offsetKnown(h.Member) {
				rf.HostOffsetNs, rf.HostOffsetKnown = h.Member.OffsetNs, true
			}
		}
		g.Hosts = append(g.Hosts, h)
	}
	if len(g.Hosts) == 0 {
		return nil, fmt.Errorf("%s: no host folder with a capture (DIR/<host>/*.trace.json.gz, or one .nsys-rep or .sqlite); pull the group first: nsys-agent pull GROUP --dir %s", dir, dir)
	}
	var traces, reports []string
	for _, h := range g.Hosts {
		if h.Nsys != "" {
			reports = append(reports, h.Name)
		} else {
			traces = append(traces, h.Name)
		}
	}
	if len(traces) > 0 && len(reports) > 0 {
		return nil, fmt.Errorf("%s mixes backends: %s hold torch traces, %s nsys reports; a group is one backend's windows: merge or analyze each kind apart", dir, strings.Join(traces, ", "), strings.Join(reports, ", "))
	}
	return g, nil
}

// isNsys says whether the group's hosts hold nsys captures (readGroupFolder allows no mix).
func (g *groupFolder) isNsys() bool { return len(g.Hosts) > 0 && g.Hosts[0].Nsys != "" }

// hostError says which host a folder problem is about, with the member's own state.
func hostError(h groupHost, err error) error {
	if h.Member != nil && h.Member.State != "" && h.Member.State != string(windows.StateCapturing) && h.Member.State != string(windows.StateReady) {
		state := h.Member.State
		if h.Member.Error != "" {
			state += ": " + h.Member.Error
		}
		return fmt.Errorf("host %s (its window was %s): %w", h.Name, state, err)
	}
	return fmt.Errorf("host %s: %w", h.Name, err)
}

// readGroupRecord reads group.json; nil, nil when there is none.
func readGroupRecord(path string) (*windows.GroupRecord, error) {
	f, err := regularfile.Open(path, false)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("group record: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxGroupRecordBytes+1))
	if err != nil {
		return nil, fmt.Errorf("group record %s: %w", path, err)
	}
	if len(b) > maxGroupRecordBytes {
		return nil, fmt.Errorf("group record %s: larger than %d MiB, no record a coordinator writes", path, maxGroupRecordBytes>>20)
	}
	var rec windows.GroupRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("group record %s: %w", path, err)
	}
	if !windows.ValidGroupID(rec.ID) {
		return nil, fmt.Errorf("group record %s: %q is no group id (g-...)", path, rec.ID)
	}
	return &rec, nil
}

// validHostFolder says whether name can be a host folder: one path element, not hidden.
func validHostFolder(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.HasPrefix(name, ".") &&
		!strings.ContainsAny(name, `/\`) && filepath.Base(name) == name
}

// files are every host's rank traces, host after host.
func (g *groupFolder) files() []torchprof.RankFile {
	var out []torchprof.RankFile
	for _, h := range g.Hosts {
		out = append(out, h.Files...)
	}
	return out
}
