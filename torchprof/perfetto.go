package torchprof

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/nsys-agent/nsys-agent/internal/atomicfile"
)

// A Perfetto multi-machine bundle: a TAR holding every rank trace and a
// perfetto_manifest.json that tells Perfetto (v58 and later; the format's normative
// reference is docs/reference/perfetto-manifest.md in google/perfetto) which machine each
// file comes from and where it lies on one timeline. Chrome JSON has no clock of its own,
// so every file but the reference is PINned to the reference file (a clocks entry
// without "clock") with offset_ns, whose sign convention is: "the source clock reads T
// when the reference clock reads T + offset_ns". A file's event at ts lies at
// ts×1000 + shift on the reference's clock, where shift is what Merge adds (clockShifts),
// so offset_ns is exactly that shift and the bundle and the merged trace agree.
//
// The rank traces are stored uncompressed although Perfetto does open gzip members: its
// TAR reader (src/trace_processor/importers/archive/tar_trace_reader.cc) hands each
// member to a ForwardingTraceParser, which sees gzip as a container
// (importers/archive/decompressing_trace_reader.cc: GzipImporter, forks_context = false)
// whose inner file it registers under the name "" (trace_file_tracker->AddFile("")). A
// manifest entry is matched by exact member path (TraceManifestState::FindEntry), and
// forwarding_trace_parser.cc rejects a machine or clocks override on a file that does not
// fork a context ("overrides are not supported for trace files which are themselves
// archives..."): a gzipped member could be neither pinned nor given its machine. Read at
// google/perfetto commit ec5d16b14b743ba6063d720956d6d6af6610fd72.

// BundleOptions tunes WritePerfettoBundle.
type BundleOptions struct {
	// Attributes annotate the archive (manifest "attributes", shown by Perfetto as
	// manifest_attribute.<key> metadata); keys should be namespaced ("nsys_agent.group").
	Attributes map[string]string
	// NoClockAlign pins every file at offset 0, as Merge's NoClockAlign keeps timestamps.
	NoClockAlign bool
	// Progress, when set, is called after each file with the input bytes read so far and
	// in total (compressed, as on disk).
	Progress func(done, total int64)
}

// BundleStats describes a written bundle.
type BundleStats struct {
	Output string `json:"output"`
	// Reference is the member every other file is pinned to (Merge's reference rank).
	Reference string         `json:"reference"`
	Files     []BundleMember `json:"files"`
	Bytes     int64          `json:"bytes"` // the archive's size
	Aligned   bool           `json:"aligned"`
	// UnalignedHosts are hosts whose clock offset is unknown (see MergeStats).
	UnalignedHosts []string `json:"unaligned_hosts,omitempty"`
	Duration       Duration `json:"duration"`
}

// BundleMember is one rank trace in a bundle.
type BundleMember struct {
	Member   string `json:"member"` // path inside the archive
	Source   string `json:"source"` // the input file
	Host     string `json:"host,omitempty"`
	Label    string `json:"label"`
	OffsetNs int64  `json:"offset_ns"` // manifest offset_ns against Reference
	Bytes    int64  `json:"bytes"`     // uncompressed JSON stored
}

// ManifestName is the bundle member holding the manifest (the name Perfetto's UI uses;
// Perfetto finds the manifest by its content).
const ManifestName = "perfetto_manifest.json"

// The manifest, as the reference defines it (version 1).
type (
	perfettoManifest struct {
		Manifest manifestBody `json:"perfetto_manifest"`
	}
	manifestBody struct {
		Version    int               `json:"version"`
		Files      []manifestFile    `json:"files"`
		Attributes map[string]string `json:"attributes,omitempty"`
	}
	manifestFile struct {
		Path    string           `json:"path"`
		Machine *manifestMachine `json:"machine,omitempty"`
		Clocks  *manifestClocks  `json:"clocks,omitempty"`
	}
	manifestMachine struct {
		Name string `json:"name"`
	}
	// manifestClocks without "clock" pins a clockless file (Chrome JSON) to the
	// reference file's own timeline (sync_to without "clock").
	manifestClocks struct {
		SyncTo   manifestSyncTo `json:"sync_to"`
		OffsetNs int64          `json:"offset_ns"`
	}
	manifestSyncTo struct {
		File string `json:"file"`
	}
)

// WritePerfettoBundle writes the rank traces in files, uncompressed, and their manifest
// into a TAR at out: each file attributed to its host's machine (files of one host share
// it) and pinned to the reference rank at the offset Merge shifts it by. Traces are
// streamed (never whole in memory); out is written through a temporary file and renamed,
// so it is complete or absent. Inputs must be regular files.
func WritePerfettoBundle(ctx context.Context, files []RankFile, out string, opts BundleOptions) (BundleStats, error) {
	start := time.Now()
	st := BundleStats{Output: out}
	if len(files) == 0 {
		return st, errors.New("perfetto bundle: no input files")
	}
	var total int64
	for _, f := range files {
		fi, err := checkRegular(f.Path)
		if err != nil {
			return st, fmt.Errorf("perfetto bundle: %w", err)
		}
		total += fi.Size()
	}
	shifts, ref, err := alignment(ctx, files, opts.NoClockAlign)
	if err != nil {
		return st, fmt.Errorf("perfetto bundle: %w", err)
	}
	st.UnalignedHosts, st.Aligned = UnalignedHosts(files), aligned(files, opts.NoClockAlign)
	names, err := memberNames(files)
	if err != nil {
		return st, err
	}
	labels := Labels(files)
	st.Reference = names[ref]
	man := perfettoManifest{manifestBody{Version: 1, Attributes: maps.Clone(opts.Attributes)}}
	if multiHost(files) {
		// Whoever opens the bundle later sees whether the hosts' clocks were aligned.
		if man.Manifest.Attributes == nil {
			man.Manifest.Attributes = map[string]string{}
		}
		man.Manifest.Attributes["nsys_agent.aligned"] = strconv.FormatBool(st.Aligned)
		if len(st.UnalignedHosts) > 0 {
			man.Manifest.Attributes["nsys_agent.unaligned_hosts"] = strings.Join(st.UnalignedHosts, ",")
		}
	}
	for i, rf := range files {
		mf := manifestFile{Path: names[i]}
		if rf.Host != "" {
			mf.Machine = &manifestMachine{Name: rf.Host}
		}
		if i != ref {
			mf.Clocks = &manifestClocks{SyncTo: manifestSyncTo{File: names[ref]}, OffsetNs: shifts[i]}
		}
		man.Manifest.Files = append(man.Manifest.Files, mf)
		st.Files = append(st.Files, BundleMember{Member: names[i], Source: rf.Path, Host: rf.Host, Label: labels[i], OffsetNs: shifts[i]})
	}
	manJSON, err := json.MarshalIndent(man, "", "  ")
	if err != nil {
		return st, fmt.Errorf("perfetto bundle: %w", err)
	}

	tmp, err := atomicfile.New(out, 0o644)
	if err != nil {
		return st, fmt.Errorf("perfetto bundle: %w", err)
	}
	defer tmp.Abort() // no-op once committed
	tw := &tarWriter{f: tmp.File, w: bufio.NewWriterSize(tmp.File, 1<<20)}
	now := time.Now()
	if _, err := tw.member(ManifestName, now, func(w io.Writer) (int64, error) {
		n, err := w.Write(append(manJSON, '\n'))
		return int64(n), err
	}); err != nil {
		return st, fmt.Errorf("perfetto bundle: write %s: %w", out, err)
	}
	var done int64
	for i, rf := range files {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		mtime := now
		if fi, err := os.Stat(rf.Path); err == nil {
			mtime = fi.ModTime()
		}
		n, err := tw.member(names[i], mtime, func(w io.Writer) (int64, error) {
			r, closeFn, err := openTrace(rf.Path, nil)
			if err != nil {
				return 0, err
			}
			defer closeFn()
			n, err := io.Copy(w, ctxReader{ctx, r})
			if err != nil {
				err = fmt.Errorf("%s: %w", rf.Path, err)
			}
			return n, err
		})
		if err != nil {
			if ctx.Err() != nil {
				return st, context.Cause(ctx)
			}
			return st, fmt.Errorf("perfetto bundle: write %s: %w", out, err)
		}
		st.Files[i].Bytes = n
		if opts.Progress != nil {
			if fi, err := os.Stat(rf.Path); err == nil {
				done += fi.Size()
			}
			opts.Progress(min(done, total), total)
		}
	}
	if err := tw.close(); err != nil {
		return st, fmt.Errorf("perfetto bundle: write %s: %w", out, err)
	}
	st.Bytes = tw.off
	if err := tmp.Commit(); err != nil {
		return st, fmt.Errorf("perfetto bundle: %w", err)
	}
	st.Duration = Duration(time.Since(start))
	return st, nil
}

// ctxReader ends a long copy when ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// tarNameMax is the longest member name that fits a TAR header's name field. Longer
// names would need a GNU long-name record, which Perfetto's TAR reader keeps with its
// terminating NUL (tar_trace_reader.cc reads metadata size bytes), so a manifest path
// would never match it; the ustar prefix field would limit members to 8 GiB.
const tarNameMax = 100

var unsafeMemberChars = regexp.MustCompile(`[^A-Za-z0-9._:+-]`)

// memberNames names each file in the archive "<host>/<file name without .gz>", or the
// file name alone without a host. A name too long for a TAR header becomes
// "<host>/rank<NNN>.trace.json" (a host name beyond 64 bytes cut, with a "~"). Perfetto skips members with a path component starting
// with "." (hidden files), so such components get a "_" in front.
func memberNames(files []RankFile) ([]string, error) {
	clean := func(s string) string {
		s = unsafeMemberChars.ReplaceAllString(s, "_")
		if strings.HasPrefix(s, ".") {
			s = "_" + s
		}
		return s
	}
	names := make([]string, len(files))
	seen := map[string]int{}
	for i, rf := range files {
		base := clean(strings.TrimSuffix(filepath.Base(rf.Path), ".gz"))
		dir := ""
		if rf.Host != "" {
			host := clean(rf.Host)
			if len(host) > 64 {
				host = host[:64] + "~"
			}
			dir = host + "/"
		}
		n := dir + base
		if len(n) > tarNameMax {
			n = dir + fmt.Sprintf("rank%03d.trace.json", i)
		}
		if j, dup := seen[n]; dup {
			return nil, fmt.Errorf("perfetto bundle: %s and %s would both be %s in the archive; give files of distinct names per host",
				files[j].Path, rf.Path, n)
		}
		seen[n] = i
		names[i] = n
	}
	return names, nil
}

// tarWriter writes a TAR whose members are streamed without knowing their size first:
// each header block is reserved, the content copied, and the header written into its
// place once the size is known (the file is ours: a temporary file of atomicfile). Headers
// are GNU format: sizes beyond 8 GiB are encoded base-256, which Perfetto reads.
type tarWriter struct {
	f   *os.File
	w   *bufio.Writer
	off int64 // bytes written so far
}

const tarBlock = 512

func (t *tarWriter) member(name string, mtime time.Time, content func(io.Writer) (int64, error)) (int64, error) {
	at := t.off
	if err := t.write(make([]byte, tarBlock)); err != nil {
		return 0, err
	}
	cw := &countWriter{w: t.w}
	n, err := content(cw)
	t.off += cw.n
	if err != nil {
		return n, err
	}
	if n != cw.n {
		return n, fmt.Errorf("tar member %s: %d bytes reported, %d written", name, n, cw.n)
	}
	if pad := (tarBlock - n%tarBlock) % tarBlock; pad > 0 {
		if err := t.write(make([]byte, pad)); err != nil {
			return n, err
		}
	}
	hdr, err := tarHeader(name, n, mtime)
	if err != nil {
		return n, err
	}
	if err := t.w.Flush(); err != nil {
		return n, err
	}
	if _, err := t.f.WriteAt(hdr, at); err != nil {
		return n, err
	}
	return n, nil
}

// tarHeader encodes one regular file's header block (GNU format) with archive/tar.
func tarHeader(name string, size int64, mtime time.Time) ([]byte, error) {
	var hdr bytes.Buffer
	err := tar.NewWriter(&hdr).WriteHeader(&tar.Header{
		Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o644,
		ModTime: mtime.Truncate(time.Second), Format: tar.FormatGNU,
	})
	if err != nil {
		return nil, fmt.Errorf("tar member %s: %w", name, err)
	}
	if hdr.Len() != tarBlock {
		return nil, fmt.Errorf("tar member %s: the header takes %d bytes, not one block", name, hdr.Len())
	}
	return hdr.Bytes(), nil
}

func (t *tarWriter) write(b []byte) error {
	n, err := t.w.Write(b)
	t.off += int64(n)
	return err
}

// close writes the end of the archive: two zero blocks.
func (t *tarWriter) close() error {
	if err := t.write(make([]byte, 2*tarBlock)); err != nil {
		return err
	}
	return t.w.Flush()
}
